"""The Keras-style model API as DeepCTR's check_model (tests/utils.py) and DeepCTR-Torch's
tests use it: compile, fit (validation, callbacks, shuffle), History, evaluate, predict,
save_weights / load_weights, save / load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dinrec
from dinrec.feature_column import get_feature_names
from dinrec.inputs import prepare_inputs, prepare_labels
from dinrec.models import DIN
from dinrec.training.callbacks import Callback

from ..conftest import random_history_data, seed_example

SMALL = {"dnn_hidden_units": (4,), "att_hidden_size": (4,)}


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p.astype(np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_deepctr_s_check_model_sequence(tmp_path):
    x, y, cols, hist = seed_example()
    model = DIN(cols, hist, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5)
    model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
    history = model.fit(x, y, batch_size=100, epochs=1, validation_split=0.5, verbose=0)
    assert sorted(history.history) == ["binary_crossentropy", "loss", "val_binary_crossentropy",
                                       "val_loss"]
    # Keras keeps int(3 * (1 - 0.5)) = 1 row for training and validates on the last 2.
    val = {k: v[1:] for k, v in x.items()}
    assert history.history["val_loss"][0] == pytest.approx(logloss(y[1:], model.predict(val)),
                                                           rel=1e-5)
    model.save_weights(tmp_path / "DIN_weights.safetensors")
    twin = DIN(cols, hist, dnn_hidden_units=[4, 4, 4], dnn_dropout=0.5, seed=5)
    twin.load_weights(tmp_path / "DIN_weights.safetensors")
    np.testing.assert_array_equal(twin.predict(x), model.predict(x))
    model.save(tmp_path / "DIN")
    loaded = dinrec.load_model(tmp_path / "DIN")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_inputs_may_come_as_a_list_in_get_feature_names_order():
    x, y, cols, hist = seed_example()
    model = DIN(cols, hist, **SMALL)
    as_list = [x[name] for name in get_feature_names(cols)]
    np.testing.assert_array_equal(model.predict(as_list), model.predict(x))
    model.compile("adam")
    assert len(model.fit(as_list, y, verbose=0).history["loss"]) == 1
    with pytest.raises(ValueError, match="list of 2 arrays but the model takes 8 inputs"):
        model.predict(as_list[:2])


def test_evaluate_returns_loss_and_metrics_over_all_rows():
    x, y, cols, hist = random_history_data(n=16, n_items=8, maxlen=3)
    model = DIN(cols, hist, init_std=0.3, **SMALL)
    model.compile("adam", metrics=["binary_crossentropy", "auc", "acc"])
    result = model.evaluate(x, y, batch_size=5)
    probs = model.predict(x, batch_size=3)
    assert probs.shape == (16, 1) and probs.dtype == np.float32
    assert list(result) == ["loss", "binary_crossentropy", "auc", "acc"]
    assert result["loss"] == pytest.approx(logloss(y, probs), rel=1e-5)
    assert result["acc"] == pytest.approx(float(np.mean((probs[:, 0] > 0.5) == y)))


def test_validation_data_is_evaluated_after_each_epoch():
    x, y, cols, hist = random_history_data(n=16, n_items=8, maxlen=3)
    model = DIN(cols, hist, **SMALL)
    model.compile("adam", metrics=["auc"])
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    assert len(history.history["val_auc"]) == 2
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x, y)["loss"])
    with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\)"):
        model.fit(x, y, verbose=0, validation_data=(x, y, np.ones(16)))


def test_callbacks_see_every_epoch_and_step_and_fit_starts_at_initial_epoch():
    x, y, cols, hist = random_history_data(n=16, n_items=8, maxlen=3)
    seen: list[tuple[str, int]] = []

    class Record(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("begin", epoch))

        def on_batch_end(self, step, logs=None):
            seen.append(("batch", step))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("end", epoch))

    model = DIN(cols, hist, **SMALL)
    model.compile("adam")
    history = model.fit(x, y, batch_size=8, epochs=3, initial_epoch=1, verbose=0,
                        callbacks=[Record()])
    assert history.epoch == [1, 2]
    assert seen == [("begin", 1), ("batch", 1), ("batch", 2), ("end", 1),
                    ("begin", 2), ("batch", 3), ("batch", 4), ("end", 2)]


def test_shuffle_false_trains_on_the_rows_in_order():
    x, y, cols, hist = random_history_data(n=12, n_items=8, maxlen=3)
    fitted = DIN(cols, hist, **SMALL)
    fitted.compile("sgd", lr=0.5, ema_momentum=None)  # the raw weights of the last step
    fitted.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    by_hand = DIN(cols, hist, **SMALL)
    by_hand.compile("sgd", lr=0.5)
    feats, labels = prepare_inputs(by_hand.schema, x), prepare_labels(y, 12)
    by_hand.trainer.prepare_regularizer([(feats, labels)])
    by_hand.train()
    for lo in (0, 4, 8):
        by_hand.trainer.train_step({k: v[lo:lo + 4] for k, v in feats.items()},
                                   labels[lo:lo + 4])
    for key, value in fitted.state_dict().items():
        torch.testing.assert_close(value, by_hand.state_dict()[key], rtol=0, atol=0)


def test_verbose_zero_prints_nothing_and_two_prints_a_line_per_epoch(capsys):
    x, y, cols, hist = random_history_data(n=8, n_items=8, maxlen=3)
    model = DIN(cols, hist, **SMALL)
    model.compile("adam")
    model.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, verbose=2)
    captured = capsys.readouterr()
    assert captured.out.count("loss: ") == 2 and captured.err == ""


def test_deepctr_torch_s_state_dict_round_trip(tmp_path):
    x, _, cols, hist = seed_example()
    model = DIN(cols, hist, **SMALL)
    torch.save(model.state_dict(), tmp_path / "DIN_weights.h5")
    twin = DIN(cols, hist, seed=9, **SMALL)
    twin.load_state_dict(torch.load(tmp_path / "DIN_weights.h5", weights_only=True))
    np.testing.assert_array_equal(twin.predict(x), model.predict(x))
