"""ONNX export of a grouped bundle: every history's broadcast forward (own length axis, own
time gap) in one graph, scoring as the torch backend does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'serve' extra")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")

from tests.unit.serving.grouped_bundle import (
    BUY_LEN,
    CLICK_LEN,
    category,
    save_grouped,
)

from dinrec.cli.main import main
from dinrec.serving.onnx_export import META_FILE, ONNX_DIR, export_onnx
from dinrec.serving.scorer import Scorer

TOL = 1e-5
NOW = 100_000.0
ITEMS = list(range(40))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grouped bundle exported by `dinrec export` (once for the module: ~10 s)."""
    bundle = save_grouped(tmp_path_factory.mktemp("onnx-groups") / "bundle")
    assert main(["export", str(bundle), "--format", "onnx"]) == 0
    return bundle


@pytest.fixture(scope="module")
def scorers(exported: Path) -> tuple[Scorer, Scorer]:
    return Scorer.load(exported), Scorer.load(exported, backend="onnx")


def _behaviors(n: int, first: int, start: float) -> list[tuple[int, int, float]]:
    """n (item, category, timestamp) behaviors, oldest first, 20 minutes apart."""
    return [(first + k, category(first + k), start + 1200.0 * k) for k in range(n)]


def test_the_export_takes_every_histories_inputs(exported: Path) -> None:
    meta = json.loads((exported / ONNX_DIR / META_FILE).read_text())
    assert meta["user_inputs"] == [
        "user_id", "hist_item_id", "hist_len", "hist_cate_id", "hist_time_gap",
        "buy_hist_item_id", "buy_hist_len", "buy_hist_cate_id", "buy_hist_time_gap"]
    assert meta["candidate_inputs"] == ["item_id", "cate_id"]


@pytest.mark.parametrize(("clicks", "buys"), [(0, 0), (CLICK_LEN, 0), (0, BUY_LEN), (2, 1),
                                              (CLICK_LEN + 2, BUY_LEN + 1)])
def test_onnx_ranks_each_group_as_torch_does(
    scorers: tuple[Scorer, Scorer], clicks: int, buys: int,
) -> None:
    torch_scorer, onnx_scorer = scorers
    history = _behaviors(clicks, 2, NOW - 86_400)
    groups = {"buy": _behaviors(buys, 20, NOW - 7200)}
    user = torch_scorer.encoder.user(3, {}, history, groups).at(NOW)
    assert user["hist_item_id"].shape[1] == max(1, min(clicks, CLICK_LEN))  # not padded
    cands = torch_scorer.encoder.items(ITEMS, [category(i) for i in ITEMS])
    want = torch_scorer.backend.logits(user, cands)
    got = onnx_scorer.backend.logits(user, cands)
    assert want.std() > 1e-3
    assert np.abs(got - want).max() <= TOL
    got_p = onnx_scorer.rank(3, ITEMS, [category(i) for i in ITEMS], history, groups=groups,
                             now=NOW).probabilities
    want_p = torch_scorer.rank(3, ITEMS, [category(i) for i in ITEMS], history, groups=groups,
                               now=NOW).probabilities
    assert np.abs(got_p - want_p).max() <= TOL


def _row(i: int) -> dict[str, Any]:
    """A score row of user i: i % 6 clicks, i % 4 buys, gaps given as numbers."""
    clicks, buys = i % 6, i % 4
    return {"user_id": i % 10, "item_id": 30 + i, "cate_id": category(30 + i),
            "hist_item_id": [2 + k for k in range(clicks)],
            "hist_cate_id": [category(2 + k) for k in range(clicks)],
            "hist_time_gap": [0.5 * k for k in range(clicks)],
            "buy_hist_item_id": [20 + k for k in range(buys)],
            "buy_hist_cate_id": [category(20 + k) for k in range(buys)],
            "buy_hist_time_gap": [3.0 - k for k in range(buys)]}


def test_onnx_scores_rows_of_many_users_as_torch_does(scorers: tuple[Scorer, Scorer]) -> None:
    torch_scorer, onnx_scorer = scorers
    rows = [_row(i) for i in range(9)]
    user, cands = torch_scorer.encoder.rows(rows)
    want = torch_scorer.backend.logits(user, cands)
    assert np.abs(onnx_scorer.backend.logits(user, cands) - want).max() <= TOL
    assert np.abs(onnx_scorer.score(rows) - torch_scorer.score(rows)).max() <= TOL


def test_a_mapping_changed_after_the_export_makes_it_stale(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(exported, copy)
    file = copy / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest["history_groups"]["buy"]["behaviors"] = ["buy"]  # carts no longer feed the buys
    file.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="re-run `dinrec export"):
        Scorer.load(copy, backend="onnx")


def test_a_per_behavior_value_serving_cannot_compute_is_refused_by_name(tmp_path: Path) -> None:
    # The graph takes any per-behavior value; serving computes only <prefix>time_gap.
    bundle = export_onnx(save_grouped(tmp_path / "bundle", buy_value="dwell")).parent
    with pytest.raises(ValueError, match=r"VarLenDenseFeat 'buy_hist_dwell' \(width 1\) "
                                         r"cannot be served"):
        Scorer.load(bundle, backend="onnx")
