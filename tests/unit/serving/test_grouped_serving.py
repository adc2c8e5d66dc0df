"""A grouped bundle served from a store of typed events scores as the model does on inputs
built by hand from the same events; the rank cache follows each group's events."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.unit.serving.grouped_bundle import (
    BUY_LEN,
    CLICK_LEN,
    FEEDS,
    category,
    grouped_model,
    save_grouped,
    typed_events,
)

from dinrec.data.events import EventLog
from dinrec.data.protocols.behavior_groups import BehaviorGroups
from dinrec.serving.encoding import RequestError
from dinrec.serving.http.schemas import EventsRequest, RankRequest
from dinrec.serving.service import RankingService, ServeConfig
from dinrec.serving.stores import Behavior, open_store

TOL = 1e-5
NOW = 50_000  # the request time: after every event below
CANDIDATES = [3, 8, 13, 21, 34]
# User 1: 7 clicks (2 untyped) for a maxlen of 5, and 4 buys / carts for a maxlen of 3: both
# histories take their newest maxlen. User 2 has clicks only, user 3 buys only: each has an
# empty history.
EVENTS = {
    "1": typed_events("1", "2:pv 4:buy 5:- 6:pv 7:cart 9:pv 10:pv 11:buy 12:- 14:cart 15:pv"),
    "2": typed_events("2", "16:pv 17:- 18:pv", start=3000),
    "3": typed_events("3", "19:buy 20:cart", start=7000, step=3601),
    # Clicks on every candidate: the store learns their categories from events.
    "9": typed_events("9", " ".join(f"{item}:pv" for item in CANDIDATES)),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_grouped(tmp_path_factory.mktemp("grouped") / "bundle")


def _service(bundle: Path, url: str, cache: bool = True) -> RankingService:
    # history_keep 20: the store keeps every event, so the groups' own maxlen trims them.
    return RankingService(ServeConfig(str(bundle), store=url, history_keep=20,
                                      cache_users=100 if cache else 0,
                                      cache_items=100 if cache else 0))


@pytest.fixture
def served(bundle: Path, store_url: str) -> Iterator[RankingService]:
    service = _service(bundle, store_url)
    for events in EVENTS.values():
        service.append(EventsRequest.model_validate({"events": events}))
    yield service
    service.close()


def _rank(service: RankingService, user: str, now: float = NOW) -> dict[str, Any]:
    return service.rank(RankRequest.model_validate(
        {"user_id": user, "candidates": CANDIDATES, "timestamp": now}))


def _by_hand(events: list[dict[str, Any]], types: list[str | None], maxlen: int,
             prefix: str, now: float = NOW) -> dict[str, torch.Tensor]:
    """One history's inputs [1, maxlen] from the events of `types` before `now`: newest
    maxlen, oldest first, 0-padded; time gap log1p(hours before now)."""
    kept = [e for e in events
            if e.get("behavior") in types and e["timestamp"] < now][-maxlen:]
    items = torch.zeros(1, maxlen, dtype=torch.long)
    cates = torch.zeros(1, maxlen, dtype=torch.long)
    gaps = torch.zeros(1, maxlen)
    for t, e in enumerate(kept):
        items[0, t], cates[0, t] = e["item_id"], e["category"]
        gaps[0, t] = math.log1p((now - e["timestamp"]) / 3600)
    return {prefix + "item_id": items, prefix + "cate_id": cates,
            prefix + "len": torch.tensor([len(kept)]), prefix + "time_gap": gaps}


def _model_scores(user: str, now: float = NOW) -> dict[int, float]:
    """sigmoid(model(inputs)) per candidate, the inputs built by hand from EVENTS."""
    events = EVENTS[user]
    inputs = {"user_id": torch.tensor([int(user)]),
              **_by_hand(events, [None, "pv"], CLICK_LEN, "hist_", now),
              **_by_hand(events, ["buy", "cart"], BUY_LEN, "buy_hist_", now)}
    n = len(CANDIDATES)
    batch = {k: v.expand(n, *v.shape[1:]) for k, v in inputs.items()}
    batch["item_id"] = torch.tensor(CANDIDATES)
    batch["cate_id"] = torch.tensor([category(i) for i in CANDIDATES])
    with torch.inference_mode():
        logits = grouped_model()(batch).squeeze(-1)
    return dict(zip(CANDIDATES, torch.sigmoid(logits).tolist(), strict=True))


def _scores(answer: dict[str, Any]) -> dict[int, float]:
    return {int(entry["item_id"]): entry["score"] for entry in answer["items"]}


@pytest.mark.parametrize(("user", "lengths"), [
    ("1", {"": CLICK_LEN, "buy": BUY_LEN}), ("2", {"": 3, "buy": 0}),
    ("3", {"": 0, "buy": 2}),
])
def test_a_rank_call_scores_each_group_as_the_model_does_on_the_same_events(
    served: RankingService, user: str, lengths: dict[str, int],
) -> None:
    answer = _rank(served, user)
    assert answer["history_lengths"] == lengths
    assert answer["history_length"] == sum(lengths.values())
    got, want = _scores(answer), _model_scores(user)
    assert max(abs(got[i] - want[i]) for i in CANDIDATES) <= TOL
    assert np.std(list(want.values())) > 1e-3  # the candidates' scores differ: a real check


def test_the_newest_maxlen_of_each_group_are_read_the_older_ones_are_not(
    served: RankingService, store_url: str,
) -> None:
    before = _scores(_rank(served, "1"))
    # Older than every event of user 1: stored, but outside both histories' newest maxlen.
    other = open_store(store_url)
    other.append([Behavior("1", "30", str(category(30)), 10.0, "pv"),
                  Behavior("1", "31", str(category(31)), 11.0, "buy")], keep=20)
    other.close()
    assert _scores(_rank(served, "1")) == before


def test_a_rank_call_at_an_earlier_time_reads_only_the_behaviors_before_it(
    served: RankingService,
) -> None:
    # User 1's 7th event is at 1000 + 6 * 600: at that second it has not happened yet
    # (the pipeline's rule), so 6 events count: clicks 2, 5, 6, 9 and buys 4, 7 (cart).
    then = 1000 + 6 * 600
    full = _rank(served, "1")  # cached at NOW
    earlier = _rank(served, "1", then)
    assert earlier["history_lengths"] == {"": 4, "buy": 2}
    got, want = _scores(earlier), _model_scores("1", then)
    assert max(abs(got[i] - want[i]) for i in CANDIDATES) <= TOL
    assert max(abs(got[i] - _scores(full)[i]) for i in CANDIDATES) > 1e-3
    # the bounded view was not cached: NOW reads every event again
    assert _rank(served, "1")["history_lengths"] == {"": CLICK_LEN, "buy": BUY_LEN}
    assert _scores(_rank(served, "1")) == _scores(full)


def _append(service: RankingService, user: str, spec: str) -> None:
    service.append(EventsRequest.model_validate({"events": typed_events(user, spec, start=40_000)}))


@pytest.mark.parametrize(("spec", "group"), [("25:cart", "buy"), ("25:pv", ""), ("25:-", "")])
def test_an_event_of_one_groups_type_is_seen_by_the_next_rank_call(
    served: RankingService, bundle: Path, store_url: str, spec: str, group: str,
) -> None:
    _rank(served, "2")
    cached = _rank(served, "2")
    assert served.cache.hits == 1
    _append(served, "2", spec)
    fresh = _rank(served, "2")
    assert served.cache.hits == 1  # a miss: the user's entry was stale
    assert fresh["history_lengths"][group] == cached["history_lengths"][group] + 1
    assert fresh["items"] != cached["items"]
    uncached = _service(bundle, store_url, cache=False)
    assert fresh == _rank(uncached, "2")
    uncached.close()


def test_an_event_no_group_reads_is_refused_and_leaves_the_cached_user(
    served: RankingService,
) -> None:
    first = _rank(served, "1")
    with pytest.raises(RequestError, match=r"'fav' feeds no history of this model"):
        _append(served, "1", "25:fav")
    assert _rank(served, "1") == first
    assert served.cache.hits == 1


def test_a_stored_event_no_group_reads_costs_a_miss_and_changes_no_score(
    served: RankingService, store_url: str,
) -> None:
    # The cache keys a user by the store's version of the user, whatever the event's type:
    # a type written behind the server's back (another writer) is a miss, read, and ignored.
    first = _rank(served, "1")
    other = open_store(store_url)
    other.append([Behavior("1", "25", str(category(25)), 45_000.0, "fav")], keep=20)
    other.close()
    again = _rank(served, "1")
    assert served.cache.hits == 0
    assert again == first


def test_the_manifest_routes_the_types(bundle: Path) -> None:
    service = _service(bundle, "sqlite:///:memory:")
    assert service.scorer.feeds.describe() == {"": [None, *FEEDS[""]], "buy": FEEDS["buy"]}
    service.close()


def test_the_request_time_gap_is_the_data_pipelines_on_the_same_events(
    served: RankingService,
) -> None:
    # Gaps from 1 s to 3 days before the request; 12 typed events (the pipeline's log has
    # no untyped ones), so both histories are trimmed to their newest maxlen.
    times = [NOW - s for s in (260_000, 90_000, 86_400, 40_000, 7200, 3599, 3600, 600, 61, 60,
                               2, 1)]
    events = typed_events("5", "2:pv 4:buy 6:pv 7:cart 9:pv 10:pv 11:buy 14:cart 15:pv 16:buy "
                                "17:pv 18:pv")
    for event, t in zip(events, times, strict=True):
        event["timestamp"] = t
    served.append(EventsRequest.model_validate({"events": events}))
    fed: dict[str, np.ndarray] = {}
    forward = served.scorer.backend.logits

    def spy(user: dict[str, np.ndarray], candidates: dict[str, np.ndarray]) -> np.ndarray:
        fed.update(user)
        return forward(user, candidates)

    served.scorer.backend.logits = spy  # type: ignore[method-assign]
    _rank(served, "5")
    column = {k: np.array([str(e[k]) for e in events]) for k in ("item_id", "category",
                                                                  "behavior")}
    log = EventLog(user=np.array(["5"] * len(events)), item=column["item_id"],
                   category=column["category"], timestamp=np.array(times, dtype=np.int64),
                   behavior=column["behavior"])
    pipeline = BehaviorGroups(log, FEEDS, encode=lambda _, raw: raw.astype(np.int64),
                              maxlen={"": CLICK_LEN, "buy": BUY_LEN}).histories(
        np.array(["5"]), np.array([NOW]))
    for prefix in ("hist_", "buy_hist_"):
        n = int(pipeline[prefix + "len"][0])
        assert fed[prefix + "len"].tolist() == [n]
        for name in ("item_id", "cate_id", "time_gap"):
            np.testing.assert_array_equal(fed[prefix + name], pipeline[prefix + name][:, :n])
    assert fed["hist_time_gap"].dtype == np.float32
    assert fed["hist_time_gap"][0, -1] == np.float32(math.log1p(1 / 3600))
