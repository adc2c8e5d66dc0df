"""`dinrec serve --backend onnx` of a grouped bundle over real HTTP: typed events reach their
histories and the rank call scores as the torch Scorer does on the same behaviors."""

from __future__ import annotations

from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")
pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'serve' extra")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")

from tests.integration.serve_process import serving  # noqa: E402
from tests.unit.serving.grouped_bundle import category, save_grouped, typed_events  # noqa: E402

from dinrec.serving.onnx_export import export_onnx  # noqa: E402
from dinrec.serving.scorer import Scorer  # noqa: E402

TOL = 1e-5
NOW = 20_000
CANDIDATES = [3, 8, 13, 21]


def test_a_grouped_bundle_ranks_over_http_with_the_onnx_backend(tmp_path: Path) -> None:
    bundle = save_grouped(tmp_path / "bundle")
    export_onnx(bundle)
    # Clicks (pv, untyped) and buys (buy, cart); the seeding user gives the candidates'
    # categories.
    events = (typed_events("1", "2:pv 4:buy 5:- 7:cart 9:pv")
              + typed_events("7", " ".join(f"{i}:pv" for i in CANDIDATES)))
    with serving(bundle, tmp_path, ["--backend", "onnx"]) as server:
        assert httpx.get(f"{server.url}/v1/model").json()["backend"] == "onnx"
        stored = httpx.post(f"{server.url}/v1/events", json={"events": events})
        assert stored.status_code == 200 and stored.json()["appended"] == len(events)
        ranked = httpx.post(f"{server.url}/v1/rank", json={
            "user_id": "1", "candidates": CANDIDATES, "timestamp": NOW}).json()
    assert ranked["history_lengths"] == {"": 3, "buy": 2}
    clicks = [(e["item_id"], e["category"], e["timestamp"]) for e in events[:5]
              if e.get("behavior") in (None, "pv")]
    buys = [(e["item_id"], e["category"], e["timestamp"]) for e in events[:5]
            if e.get("behavior") in ("buy", "cart")]
    want = Scorer.load(bundle).rank(1, CANDIDATES, [category(i) for i in CANDIDATES], clicks,
                                    groups={"buy": buys}, now=NOW).probabilities
    got = {item["item_id"]: item["score"] for item in ranked["items"]}
    assert max(abs(got[i] - float(p)) for i, p in zip(CANDIDATES, want, strict=True)) <= TOL
