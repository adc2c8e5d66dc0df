from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dinrec.models import DIN
from dinrec.training.callbacks import Callback


class Interrupt(Exception):
    pass


class SnapshotThenDie(Callback):
    """Takes a trainer checkpoint at `step`, then raises as a kill would."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.state: dict | None = None

    def on_batch_end(self, step, logs=None):
        if step == self.step:
            self.state = copy.deepcopy(self.trainer.state_dict())
            raise Interrupt


def make(cols, hist, reg):
    model = DIN(cols, hist, dnn_dropout=0.3, embedding_regularization=reg, seed=5)
    model.compile("adam", metrics=["auc"], lr=1e-2)
    return model


@pytest.mark.parametrize("reg", ["l2", "mba"])
def test_resume_mid_epoch_gives_the_same_weights_and_metrics(random_data, reg):
    x, y, cols, hist = random_data
    torch.manual_seed(11)
    full = make(cols, hist, reg)
    full_hist = full.fit(x, y, batch_size=8, epochs=3, verbose=0)

    torch.manual_seed(11)
    first = make(cols, hist, reg)
    killer = SnapshotThenDie(step=13)  # epoch 2 (8 batches per epoch), 5th batch
    with pytest.raises(Interrupt):
        first.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[killer])
    assert killer.state is not None and killer.state["epoch"] == 1

    torch.manual_seed(999)  # the restarted process has other RNG state
    resumed = make(cols, hist, reg)
    resumed.trainer.load_state_dict(killer.state)
    resumed_hist = resumed.fit(x, y, batch_size=8, epochs=3, verbose=0)

    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    np.testing.assert_array_equal(full.predict(x), resumed.predict(x))
    # the interrupted epoch's metrics cover all of its batches, not only those after resume
    assert resumed_hist.history["loss"][0] == pytest.approx(full_hist.history["loss"][1])
    assert resumed_hist.history["auc"][-1] == pytest.approx(full_hist.history["auc"][-1])


def test_resume_mid_epoch_keeps_the_sample_of_an_epoch_past_its_metric_cap(random_data):
    x, y, cols, hist = random_data  # 64 rows: past a cap of 20 rows, AUC is over a sample

    def capped():
        model = DIN(cols, hist, dnn_dropout=0.3, seed=5)
        model.compile("adam", metrics=["auc", "gauc", "logloss"], lr=1e-2,
                      train_metric_rows=20)
        return model

    torch.manual_seed(11)
    full_hist = capped().fit(x, y, batch_size=8, epochs=2, verbose=0)
    torch.manual_seed(11)
    first = capped()
    killer = SnapshotThenDie(step=13)  # epoch 2, 40 of its 64 rows seen: sampling already
    with pytest.raises(Interrupt):
        first.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[killer])
    resumed = capped()
    resumed.trainer.load_state_dict(killer.state)
    resumed_hist = resumed.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for key in ("auc", "gauc", "logloss", "loss"):
        assert resumed_hist.history[key][-1] == full_hist.history[key][-1], key
