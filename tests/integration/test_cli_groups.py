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
    _serve_typed_events(run / "model", tmp_path)


def _serve_typed_events(bundle: Path, folder: Path) -> None:
    """`dinrec serve` of the bundle over real HTTP: each type reaches its history, a type
    that feeds none is a 422 naming the event's field."""
    httpx = pytest.importorskip("httpx", reason="serving needs the 'serve' extra")
    pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra")
    from tests.integration.serve_process import serving

    def event(behavior: str, ts: int) -> dict[str, object]:
        return {"user_id": "1", "item_id": "2268318", "category": "2520377",
                "timestamp": ts, "behavior": behavior}

    with serving(bundle, folder) as server:
        bad = httpx.post(f"{server.url}/v1/events", json={"events": [event("fav", 1)]})
        assert bad.status_code == 422 and bad.json()["field"] == "events[0].behavior"
        typed = [event("pv", 1511544070), event("buy", 1511544080), event("cart", 1511544090)]
        assert httpx.post(f"{server.url}/v1/events",
                          json={"events": typed}).json()["appended"] == 3
        ranked = httpx.post(f"{server.url}/v1/rank",
                            json={"user_id": "1", "candidates": ["2268318", "4354614"]}).json()
        assert ranked["history_lengths"] == {"": 1, "buy": 2}
        assert sorted(item["item_id"] for item in ranked["items"]) == ["2268318", "4354614"]


@pytest.mark.parametrize(("override", "said"), [
    ('data.history_groups={buy="buy"}',
     "data.history_groups: history group 'buy': give a list of behavior types, got 'buy'"),
    ('data.history_groups={buy=["click"]}',
     "data.history_groups: history group 'buy': unknown behavior type 'click'"),
    ('data.sample_behaviors=["zz"]', "data.sample_behaviors: sample_behaviors: unknown "
     "behavior type 'zz'"),
])
def test_a_bad_group_setting_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, said: str
) -> None:
    config = REPO_ROOT / "configs" / "taobao-groups.toml"
    code = main(["train", str(config), "--set", override, "--out", str(tmp_path / "run")])
    assert code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()
