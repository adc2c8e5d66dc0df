"""EpochRows: a training epoch's rows for its metrics, exact below the cap, sampled above."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dinrec.experiment.config import TrainingConfig, config_from_dict
from dinrec.experiment.config.typed_tables import ConfigError
from dinrec.metrics import auc, compute_metrics, gauc, logloss, resolve_metrics
from dinrec.models import DIN
from dinrec.training.epoch_metrics import DEFAULT_CAP, EpochRows, row_keys

METRICS = resolve_metrics(["auc", "gauc", "logloss", "accuracy"])


def fill(rows: EpochRows, logits, labels, groups=None, batch: int = 2) -> EpochRows:
    for i in range(0, len(logits), batch):
        rows.append(logits[i:i + batch], labels[i:i + batch],
                    None if groups is None else groups[i:i + batch])
    return rows


def epoch_data(n: int, n_groups: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, n_groups, (n,), generator=g)
    logits = torch.randn(n, generator=g)
    labels = (torch.rand(n, generator=g) < torch.sigmoid(2 * logits)).float()
    return logits, labels, groups


def test_below_the_cap_every_row_is_kept_in_arrival_order():
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0, -0.5])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    groups = torch.tensor([7, 7, 8, 8, 8])
    rows = fill(EpochRows(5, metrics=METRICS), logits, labels, groups)
    scores, y, g = rows.sample()
    assert not rows.sampled and rows.rows == 5
    assert torch.equal(scores, logits) and torch.equal(y, labels) and torch.equal(g, groups)


def test_at_most_cap_rows_give_exactly_the_metrics_of_all_rows():
    logits, labels, groups = epoch_data(300)
    capped = fill(EpochRows(300, metrics=METRICS), logits, labels, groups, batch=7)
    prob = torch.sigmoid(logits).numpy()
    assert capped.compute() == compute_metrics(METRICS, labels.numpy(), prob, groups.numpy())
    uncapped = fill(EpochRows(None, metrics=METRICS), logits, labels, groups, batch=7)
    assert capped.compute() == uncapped.compute()


def test_above_the_cap_the_sample_is_the_cap_rows_of_smallest_key():
    keys = row_keys(0, 0, 0, 10)
    assert keys.unique().numel() == 10  # a bijection of the row index: no ties
    rows = fill(EpochRows(3), torch.arange(10.0), torch.tensor([0.0, 1.0] * 5))
    assert rows.sampled and rows.rows == 10
    assert rows.sample()[0].tolist() == [4.0, 6.0, 7.0]
    smallest = torch.sort(torch.topk(keys, 3, largest=False).indices).values
    assert smallest.tolist() == [4, 6, 7]


def test_another_epoch_draws_another_sample():
    rows = fill(EpochRows(3, seed=0, epoch=1), torch.arange(10.0), torch.ones(10))
    assert rows.sample()[0].tolist() == [0.0, 2.0, 8.0]


def test_with_groups_the_sample_is_whole_groups_filled_up_with_one_more_groups_rows():
    groups = torch.arange(12) // 4  # three users of 4 rows each
    rows = EpochRows(6)
    rows.append(torch.arange(12.0), torch.tensor([0.0, 1.0] * 6), groups)
    scores, _, g = rows.sample()
    assert scores.tolist() == [0.0, 2.0, 8.0, 9.0, 10.0, 11.0]
    assert g.tolist() == [0, 0, 2, 2, 2, 2]  # user 2 whole, 2 of user 0's 4 rows


def test_the_sample_is_deterministic_and_the_same_for_any_batch_size():
    logits, labels, groups = epoch_data(1000)
    a = fill(EpochRows(100, seed=3), logits, labels, groups, batch=7).sample()
    b = fill(EpochRows(100, seed=3), logits, labels, groups, batch=256).sample()
    c = fill(EpochRows(100, seed=4), logits, labels, groups, batch=7).sample()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_memory_stays_bounded_above_the_cap():
    logits, labels, groups = epoch_data(20_000, n_groups=5000)
    rows = EpochRows(100, metrics=METRICS)
    most = 0
    for i in range(0, 20_000, 7):
        rows.append(logits[i:i + 7], labels[i:i + 7], groups[i:i + 7])
        most = max(most, len(rows), rows.scores.view().untyped_storage().nbytes() // 4)
    assert most <= 2 * 100 + 100 + 7  # 2 * cap, a chunk (cap here) and a batch: storage too
    assert len(rows.sample()[0]) == 100


def test_logloss_and_accuracy_stay_over_every_row_above_the_cap():
    logits, labels, groups = epoch_data(2000)
    rows = fill(EpochRows(150, metrics=METRICS), logits, labels, groups, batch=16)
    prob = torch.sigmoid(logits).numpy()
    out = rows.compute()
    # rel 1e-6: torch's float32 sigmoid of a 16-row batch and of all 2000 rows differ in
    # the last bit of a few rows (vectorised loop vs tail); the sum itself is float64.
    assert out["logloss"] == pytest.approx(logloss(labels.numpy(), prob), rel=1e-6)
    assert out["accuracy"] == float(np.mean((prob > 0.5) == (labels.numpy() == 1.0)))
    scores, y, g = rows.sample()
    sample_prob = torch.sigmoid(scores).numpy()
    assert out["auc"] == auc(y.numpy(), sample_prob)
    assert out["gauc"] == gauc(y.numpy(), sample_prob, g.numpy())


def test_a_restored_state_continues_to_the_same_sample():
    logits, labels, groups = epoch_data(600)
    whole = fill(EpochRows(50, metrics=METRICS), logits, labels, groups, batch=8)
    first = fill(EpochRows(50, metrics=METRICS), logits[:304], labels[:304], groups[:304], 8)
    resumed = EpochRows(50, metrics=METRICS)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    fill(resumed, logits[304:], labels[304:], groups[304:], batch=8)
    assert all(torch.equal(x, y) for x, y in zip(whole.sample(), resumed.sample(), strict=True))
    assert resumed.compute() == whole.compute()


def test_a_cap_below_one_row_is_refused():
    with pytest.raises(ValueError, match="cap must be >= 1"):
        EpochRows(0)


def test_training_metrics_beyond_the_cap_are_sampled_and_validation_is_not(random_data):
    x, y, cols, hist = random_data  # 64 rows
    fits = {}
    for cap in (None, 20):
        model = DIN(cols, hist, seed=5)
        model.compile("adam", metrics=["auc", "gauc", "logloss"], train_metric_rows=cap)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                            validation_data=(x, y))
        fits[cap] = (model.trainer.last_metric_rows, history.history)
    assert fits[None][0] == (64, 64) and fits[20][0] == (20, 64)
    exact, sampled = fits[None][1], fits[20][1]
    assert sampled["auc"] != exact["auc"]  # 20 of 64 rows
    assert sampled["logloss"] == pytest.approx(exact["logloss"], rel=1e-6)
    for key in ("loss", "val_auc", "val_gauc", "val_logloss"):
        assert sampled[key] == exact[key], key


def test_the_default_cap_keeps_a_small_epoch_exact(random_data):
    x, y, cols, hist = random_data
    histories = []
    for cap in (DEFAULT_CAP, None):
        model = DIN(cols, hist, seed=5)
        model.compile("adam", metrics=["auc", "gauc"], train_metric_rows=cap)
        histories.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0).history)
    assert histories[0] == histories[1]


def test_the_config_default_is_the_trainers_and_negative_rows_are_refused():
    assert TrainingConfig().train_metric_rows == DEFAULT_CAP
    raw = {"data": {"source": "synthetic", "protocol": "click-log"}}
    with pytest.raises(ConfigError, match="train_metric_rows must be >= 0"):
        config_from_dict({**raw, "training": {"train_metric_rows": -1}})
