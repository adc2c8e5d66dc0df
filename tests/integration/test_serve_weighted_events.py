"""`dinrec serve` of a weighted bundle over real HTTP: events carry weights, /v1/rank scores
as the in-process Scorer does on the same weighted behaviors, and a weight a float32 cannot
hold is a 422 naming it (nothing stored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.serve_process import serving  # noqa: E402
from tests.unit.serving.weighted_bundle import category, save_weighted  # noqa: E402

from dinrec.serving.scorer import Scorer  # noqa: E402

TOL = 1e-5
CANDIDATES = [3, 8, 13, 21]


def _event(user: str, item: int, ts: int, kind: str, weight: Any = None) -> dict[str, Any]:
    event = {"user_id": user, "item_id": item, "category": category(item), "timestamp": ts,
             "behavior": kind}
    if weight is not None:
        event["weight"] = weight
    return event


def test_weighted_events_over_http_rank_as_the_in_process_scorer(tmp_path: Path) -> None:
    bundle = save_weighted(tmp_path / "bundle", groups=True)
    clicks = [(5, 0.5), (6, 2.0), (9, 3.0), (11, 0.25), (12, 1.5)]  # maxlen 4: the newest 4
    buys = [(14, 2.5), (19, 4.0)]
    events = ([_event("3", i, 100 + t, "pv", w) for t, (i, w) in enumerate(clicks)]
              + [_event("3", i, 50 + t, "buy", w) for t, (i, w) in enumerate(buys)]
              + [_event("9", i, 10, "pv") for i in CANDIDATES])  # the candidates' categories
    bad = [1e39, 10**400, float("nan"), float("inf"), "2.0", [1.0], True]
    with serving(bundle, tmp_path) as server, httpx.Client(base_url=server.url,
                                                           timeout=30) as http:
        stored = http.post("/v1/events", json={"events": events})
        # The store keeps maxlen (4) per type: the oldest click is trimmed at once.
        assert stored.status_code == 200, stored.text
        assert (stored.json()["appended"], stored.json()["trimmed"]) == (len(events) - 1, 1)
        ranked = http.post("/v1/rank", json={"user_id": "3", "candidates": CANDIDATES}).json()
        for weight in bad:
            body = json.dumps({"events": [_event("7", 5, 1, "pv"), _event("7", 6, 2, "pv",
                                                                          weight)]})
            r = http.post("/v1/events", content=body,
                          headers={"content-type": "application/json"})
            assert (r.status_code, r.json()["field"]) == (422, "events[1].weight"), r.text
            assert r.json()["error"].startswith("events[1].weight: ")
        cold = http.post("/v1/rank", json={"user_id": "7", "candidates": CANDIDATES}).json()
        assert cold["cold_start"] is True  # no event of a refused call was stored
        log = server.log()
    assert ranked["history_lengths"] == {"": 4, "buy": 2}
    cats = [category(i) for i in CANDIDATES]
    scorer = Scorer.load(bundle)

    def expected(ones: bool) -> list[float]:
        def behaviors(pairs: list[tuple[int, float]], start: int) -> list[tuple[Any, ...]]:
            return [(i, category(i), start + t, 1.0 if ones else w)
                    for t, (i, w) in enumerate(pairs)]
        return scorer.rank(3, CANDIDATES, cats, behaviors(clicks, 100),
                           groups={"buy": behaviors(buys, 50)}).probabilities.tolist()

    got = {item["item_id"]: item["score"] for item in ranked["items"]}
    want, unweighted = expected(False), expected(True)
    assert max(abs(got[i] - p) for i, p in zip(CANDIDATES, want, strict=True)) <= TOL
    assert max(abs(a - b) for a, b in zip(want, unweighted, strict=True)) > 1e-3
    assert "Traceback" not in log
