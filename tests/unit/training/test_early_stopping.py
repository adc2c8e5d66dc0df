"""EarlyStopping follows Keras 3's counting, min_delta, baseline and restore rules."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dinrec.training.callbacks import EarlyStopping


def run(stop: EarlyStopping, values: list[float], key: str = "val_loss") -> list[int]:
    """Feed one monitored value per epoch, as fit does; returns the epochs that ran.
    The 'model' is one weight holding the epoch number, so restores are visible."""
    model = torch.nn.Linear(1, 1, bias=False)
    trainer: Any = SimpleNamespace(model=model, stop_training=False)
    stop.set_trainer(trainer)
    stop.on_train_begin()
    ran = []
    for epoch, value in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        ran.append(epoch)
        stop.on_epoch_end(epoch, {key: value})
        if trainer.stop_training:
            break
    stop.on_train_end()
    return ran


@pytest.mark.parametrize("patience", [0, 1])
def test_patience_zero_and_one_stop_at_the_first_epoch_without_improvement(patience):
    stop = EarlyStopping(patience=patience)
    assert run(stop, [3.0, 2.0, 2.0, 1.0]) == [0, 1, 2]
    assert (stop.stopped_epoch, stop.best_epoch, stop.best) == (2, 1, 2.0)


def test_patience_counts_epochs_without_improvement_until_it_is_reached():
    stop = EarlyStopping(patience=2)
    # 2.5 and 2.2 do not beat 2.0: the second of them stops (wait 2 >= patience 2).
    assert run(stop, [3.0, 2.0, 2.5, 2.2, 1.0]) == [0, 1, 2, 3]
    assert stop.wait == 2 and stop.stopped_epoch == 3


def test_the_first_epoch_never_stops_training():
    # NaN never improves, yet Keras does not stop at epoch 0.
    assert run(EarlyStopping(patience=0), [float("nan"), 1.0, 1.0]) == [0, 1, 2]


def test_min_delta_is_a_strict_margin():
    stop = EarlyStopping(patience=1, min_delta=0.5)
    # 2.5 is exactly best - min_delta: not an improvement (Keras compares strictly).
    assert run(stop, [3.0, 2.5]) == [0, 1]
    assert stop.best == 3.0
    stop = EarlyStopping(patience=1, min_delta=-0.5)  # the sign is ignored, as in Keras
    assert run(stop, [3.0, 2.4, 2.3]) == [0, 1, 2]
    assert stop.best == 2.4


def test_max_mode_is_chosen_for_auc():
    stop = EarlyStopping(monitor="val_auc", patience=1)
    assert run(stop, [0.6, 0.7, 0.65], key="val_auc") == [0, 1, 2]
    assert stop.best == 0.7


def test_baseline_keeps_counting_until_it_is_beaten():
    # Each value improves on the last but none beats the baseline 1.0: wait keeps growing,
    # and the first epoch that does not improve stops training.
    stop = EarlyStopping(patience=2, baseline=1.0)
    assert run(stop, [3.0, 2.0, 1.5, 1.7, 1.6]) == [0, 1, 2, 3]
    assert stop.wait == 4 and stop.best == 1.5
    # Beating the baseline resets the count.
    stop = EarlyStopping(patience=2, baseline=1.0)
    assert run(stop, [3.0, 0.9, 1.2, 1.1, 1.0]) == [0, 1, 2, 3]


def test_start_from_epoch_ignores_the_warm_up():
    stop = EarlyStopping(patience=0, start_from_epoch=2)
    assert run(stop, [1.0, 5.0, 4.0, 4.0]) == [0, 1, 2, 3]
    assert stop.best_epoch == 2


def test_restore_best_weights_loads_the_best_epoch():
    stop = EarlyStopping(patience=1, restore_best_weights=True)
    run(stop, [3.0, 1.0, 2.0])
    assert stop.trainer.model.weight.item() == 1.0  # the weights of epoch 1


def test_a_reused_callback_starts_afresh():
    stop = EarlyStopping(patience=1)
    run(stop, [1.0, 2.0])
    assert run(stop, [5.0, 4.0, 4.5]) == [0, 1, 2] and stop.best == 4.0
