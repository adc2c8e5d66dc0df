"""configs/taobao-groups.toml end to end: `dinrec train` builds the click + buy groups from the
shared Taobao sample, trains the grouped DIN, and `dinrec evaluate --strict` scores its bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import REPO_ROOT

from dinrec.cli.main import main


def test_taobao_groups_config_trains_and_evaluates_a_grouped_bundle(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (shared_data / "taobao-userbehavior-sample" / "UserBehavior_head.csv").is_file():
        pytest.skip("the Taobao UserBehavior sample is absent from the shared data folder")
    run = tmp_path / "run"
    config = REPO_ROOT / "configs" / "taobao-groups.toml"
    assert main(["train", str(config), "--set", "training.epochs=1", "--out", str(run),
                 "--quiet"]) == 0
    meta = json.loads((run / "data" / "dataset.json").read_text())
    assert meta["history_groups"] == {"buy": ["buy", "cart"]}
    schema = (run / "model" / "schema.json").read_text()
    assert "buy_hist_item_id" in schema and "buy_hist_cate_id" in schema
    # Serving routes typed events by the manifest: pv to hist_*, buy and cart to buy_hist_*.
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["history_groups"] == {
        "": {"features": ["item_id", "cate_id"], "behaviors": ["pv"]},
        "buy": {"features": ["item_id", "cate_id"], "behaviors": ["buy", "cart"]},
    }
    capsys.readouterr()
    assert main(["evaluate", str(run / "model"), "--data", str(run / "data"), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "test samples: 86" in out and "GAUC" in out
