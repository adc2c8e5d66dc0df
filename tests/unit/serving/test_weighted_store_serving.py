"""A weighted bundle ranked from the store scores as the model does on inputs built by hand
with the stored weights: events carry a weight, each history (and each history group) reads
its own behaviors' weights, the newest maxlen kept with their behaviors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.unit.serving.weighted_bundle import (
    BUY_LEN,
    MAXLEN,
    category,
    save_weighted,
    weighted_model,
)

from dinrec.serving.encoding import FeatureEncoder, RequestError
from dinrec.serving.http.schemas import EventsRequest, RankRequest
from dinrec.serving.service import RankingService, ServeConfig
from dinrec.serving.stores import open_store

TOL = 1e-5
CANDIDATES = [3, 8, 13, 21, 29]
# Six clicks (the newest MAXLEN are read) and three buys (the newest BUY_LEN), weighted.
CLICKS = [(5, 0.5), (6, 2.0), (7, 1.0), (9, 3.0), (11, 0.25), (12, 1.5)]
BUYS = [(14, 2.5), (17, 0.5), (19, 4.0)]


def _events(behaviors: list[tuple[int, float]], kind: str | None, start: int) -> list[dict]:
    out = []
    for t, (item, weight) in enumerate(behaviors):
        event = {"user_id": 3, "item_id": item, "category": category(item),
                 "timestamp": start + t, "weight": weight}
        if kind is not None:
            event["behavior"] = kind
        out.append(event)
    return out


def _by_hand(behaviors: list[tuple[int, float]], maxlen: int, prefix: str,
             ones: bool = False) -> dict[str, torch.Tensor]:
    """One history's inputs [1, maxlen]: the newest maxlen behaviors with their weights."""
    kept = behaviors[-maxlen:]
    items = torch.zeros(1, maxlen, dtype=torch.long)
    items[0, : len(kept)] = torch.tensor([item for item, _ in kept])
    weights = torch.full((1, maxlen), 7.0)  # padding's weight must not matter
    weights[0, : len(kept)] = torch.tensor([1.0 if ones else w for _, w in kept])
    return {prefix + "item_id": items, prefix + "cate_id": torch.where(items > 0, items % 4 + 1, 0),
            prefix + "w": weights}


def _model_scores(model: torch.nn.Module, user: dict[str, torch.Tensor]) -> np.ndarray:
    n = len(CANDIDATES)
    batch = {k: v.expand(n, *v.shape[1:]) for k, v in user.items()}
    batch["user_id"] = torch.full((n,), 3)
    batch["item_id"] = torch.tensor(CANDIDATES)
    batch["cate_id"] = torch.tensor([category(i) for i in CANDIDATES])
    with torch.inference_mode():
        return torch.sigmoid(model(batch).squeeze(-1)).numpy()


def _service(bundle: Path, url: str, history_keep: int | None = None) -> RankingService:
    """A service of `bundle` over the store at `url`, which knows the candidates' categories."""
    service = RankingService(ServeConfig(str(bundle), store=url, history_keep=history_keep))
    service.store.put_items({str(i): str(category(i)) for i in CANDIDATES})
    return service


@pytest.fixture(params=[False, True], ids=["one-history", "groups"])
def served(request: pytest.FixtureRequest, tmp_path: Path, store_url: str
           ) -> Iterator[tuple[RankingService, bool]]:
    groups = request.param
    save_weighted(tmp_path / "bundle", groups)
    # history_keep 20: the store keeps every event, so the encoder's maxlen cut is tested.
    service = _service(tmp_path / "bundle", store_url, history_keep=20)
    events = _events(CLICKS, "pv" if groups else None, 100)
    if groups:
        events += _events(BUYS, "buy", 50)  # interleaved in time with the clicks
    service.append(EventsRequest.model_validate({"events": events}))
    yield service, groups
    service.close()


def _ranked(service: RankingService) -> np.ndarray:
    answer = service.rank(RankRequest.model_validate({"user_id": 3, "candidates": CANDIDATES}))
    scores = {entry["item_id"]: entry["score"] for entry in answer["items"]}
    return np.array([scores[i] for i in CANDIDATES])


def test_a_rank_call_weighs_each_stored_behavior_as_the_model_does(
    served: tuple[RankingService, bool],
) -> None:
    service, groups = served
    model = weighted_model(groups)
    user = _by_hand(CLICKS, MAXLEN, "hist_")
    ones = _by_hand(CLICKS, MAXLEN, "hist_", ones=True)
    if groups:  # each group's weights come from its own events
        user |= _by_hand(BUYS, BUY_LEN, "buy_hist_")
        ones |= _by_hand(BUYS, BUY_LEN, "buy_hist_", ones=True)
    want, unweighted = _model_scores(model, user), _model_scores(model, ones)
    got = _ranked(service)
    assert np.abs(got - want).max() <= TOL
    assert np.abs(want - unweighted).max() > 1e-3  # the stored weights change the scores
    assert np.std(want) > 1e-3


def test_events_without_a_weight_weigh_one(tmp_path: Path, store_url: str) -> None:
    save_weighted(tmp_path / "bundle")
    service = _service(tmp_path / "bundle", store_url)
    try:
        events = _events(CLICKS, None, 100)
        for event in events:
            del event["weight"]
        service.append(EventsRequest.model_validate({"events": events}))
        want = _model_scores(weighted_model(), _by_hand(CLICKS, MAXLEN, "hist_", ones=True))
        assert np.abs(_ranked(service) - want).max() <= TOL
    finally:
        service.close()


@pytest.mark.parametrize("weight", [1e39, -1e39, 10**400])
def test_an_event_weight_beyond_float32_is_refused_naming_it(
    tmp_path: Path, weight: float,
) -> None:
    save_weighted(tmp_path / "bundle")
    service = RankingService(ServeConfig(str(tmp_path / "bundle"),
                                         store=f"sqlite:///{tmp_path / 's.db'}"))
    try:
        events = _events(CLICKS[:2], None, 100)
        events[1]["weight"] = weight
        with pytest.raises(RequestError, match="float32") as err:
            service.append(EventsRequest.model_validate({"events": events}))
        assert err.value.field == "events[1].weight"
        assert service.store.counts()["behaviors"] == 0  # the whole call is refused
    finally:
        service.close()


def test_a_stored_weight_a_float32_cannot_hold_is_skipped_and_counted(
    tmp_path: Path, store_url: str,
) -> None:
    save_weighted(tmp_path / "bundle")
    service = _service(tmp_path / "bundle", store_url)
    try:
        other = open_store(store_url)  # another writer, behind the server's checks
        other.replace_users({"3": [(str(i), str(category(i)), float(t), None, w)
                                   for t, (i, w) in enumerate([*CLICKS[:3], (27, 1e300)])]}, {})
        other.close()
        want = _model_scores(weighted_model(), _by_hand(CLICKS[:3], MAXLEN, "hist_"))
        assert np.abs(_ranked(service) - want).max() <= TOL
        assert ('dinrec_store_values_skipped_total{kind="behavior"} 1'
                in service.metrics.render())
    finally:
        service.close()


def test_the_encoder_reads_each_behaviors_weight_one_where_it_has_none() -> None:
    encoder = FeatureEncoder(weighted_model().schema, None)
    user = encoder.user(3, {}, [(5, 1, 10.0, 0.5), (6, 2, 11.0), (7, 3, 12.0, 2.0)])
    assert user.arrays["hist_w"].tolist() == [[0.5, 1.0, 2.0]]
    # Beyond maxlen the newest behaviors are kept with their weights.
    long = [(i, 1, float(i), float(i) / 2) for i in range(1, 8)]
    user = encoder.user(3, {}, long)
    assert user.arrays["hist_w"].tolist() == [[2.0, 2.5, 3.0, 3.5]]
    assert user.arrays["hist_item_id"].tolist() == [[4, 5, 6, 7]]
    assert encoder.user(3, {}, []).arrays["hist_w"].tolist() == [[1.0]]


def test_a_stored_weight_that_is_not_a_number_is_skipped_too(tmp_path: Path) -> None:
    save_weighted(tmp_path / "bundle")
    service = _service(tmp_path / "bundle", f"sqlite:///{tmp_path / 's.db'}")
    try:
        conn = sqlite3.connect(tmp_path / "s.db")  # a writer that bypasses every check
        conn.executemany("INSERT INTO behaviors (user_id, ts, item_id, category, weight) "
                         "VALUES ('3', ?, ?, ?, ?)",
                         [(1.0, "5", "2", 0.5), (2.0, "6", "3", "heavy")])
        conn.commit()
        conn.close()
        want = _model_scores(weighted_model(), _by_hand(CLICKS[:1], MAXLEN, "hist_"))
        assert np.abs(_ranked(service) - want).max() <= TOL
    finally:
        service.close()
