from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinrec.inputs import prepare_inputs, prepare_labels
from dinrec.metrics import auc, gauc, resolve_metrics
from dinrec.models import DIN, EmbeddingMLP
from dinrec.training.batches import TensorBatches
from dinrec.training.callbacks import EarlyStopping, ModelCheckpoint
from dinrec.training.evaluation import evaluate_model


def test_history_has_loss_metrics_and_validation(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", "binary_crossentropy", metrics=["auc", "gauc", "binary_crossentropy"])
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_split=0.25)
    assert set(history.history) == {
        "loss",
        "auc",
        "gauc",
        "binary_crossentropy",
        "val_loss",
        "val_auc",
        "val_gauc",
        "val_binary_crossentropy",
    }
    assert all(len(v) == 3 for v in history.history.values())
    assert history.epoch == [0, 1, 2]


def test_epoch_metrics_are_computed_over_all_predictions(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", metrics=["auc", "gauc"])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    scores = model.predict(x)
    # batch_size=1: every batch has one class, yet the metric is the whole-data AUC
    result = model.evaluate(x, y, batch_size=1)
    assert result["auc"] == pytest.approx(auc(y, scores))
    assert result["gauc"] == pytest.approx(gauc(y, scores, x["user_id"]))


def test_one_class_batches_do_not_crash_training(random_data):
    x, y, cols, hist = random_data
    model = EmbeddingMLP(cols, hist)
    model.compile("adam", metrics=["auc"])
    history = model.fit(x, np.zeros_like(y), batch_size=4, epochs=1, verbose=0)
    assert np.isnan(history.history["auc"][0])


def test_validation_split_takes_the_last_rows_like_keras(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", metrics=["auc"])
    y2 = y.copy()
    y2[-16:] = 0  # validation part (last 25% of 64) is one class -> val_auc is nan
    history = model.fit(x, y2, batch_size=8, epochs=1, verbose=0, validation_split=0.25)
    assert np.isnan(history.history["val_auc"][0])
    assert not np.isnan(history.history["auc"][0])


def test_validation_data_matches_evaluate(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", metrics=["auc"])
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))
    assert history.history["val_auc"][0] == pytest.approx(model.evaluate(x, y)["auc"])


def test_fit_accepts_a_batch_loader(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", metrics=["auc"])
    loader = TensorBatches(prepare_inputs(model.schema, x), prepare_labels(y, len(y)), 16, True)
    history = model.fit(loader, epochs=2, verbose=0)
    assert len(history.history["auc"]) == 2
    with pytest.raises(ValueError, match="y must be None"):
        model.fit(loader, y, epochs=1, verbose=0)


def test_training_is_reproducible(random_data):
    x, y, cols, hist = random_data
    preds = []
    for _ in range(2):
        model = DIN(cols, hist, seed=3)
        model.compile("adam")
        torch.manual_seed(0)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        preds.append(model.predict(x))
    np.testing.assert_array_equal(preds[0], preds[1])


def test_early_stopping_stops_at_the_first_epoch_without_improvement(random_data):
    x, y, cols, hist = random_data
    # PReLU keeps no moving statistics (Dice does, and they move in every training forward
    # even at lr=0), so with lr=0 every epoch scores exactly alike: nothing improves.
    model = DIN(cols, hist, att_activation="prelu")
    model.compile("sgd", lr=0.0)
    stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    history = model.fit(x, y, epochs=10, verbose=0, validation_data=(x, y), callbacks=[stop])
    val_loss = history.history["val_loss"]
    assert len(val_loss) == 2 and val_loss[0] == val_loss[1]  # Keras: stop when wait >= 1
    assert stop.stopped_epoch == 1 and stop.best_epoch == 0 and stop.wait == 1


def test_model_checkpoint_saves_best_only(tmp_path, random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", lr=1e-2, metrics=["auc"])
    ckpt = ModelCheckpoint(str(tmp_path / "ep{epoch:02d}"), monitor="loss", save_best_only=True)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ckpt])
    assert ckpt.saved and all((tmp_path / p).is_dir() for p in ckpt.saved)
    assert ckpt.saved[0].endswith("ep01")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ["auc", "mse"]}, "unknown metric 'mse'"),
        ({"optimizer": "adamax"}, "unknown optimizer 'adamax'"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"metrics": ["gauc"], "gauc_group": None, "_drop_user": True}, "gauc_group"),
    ],
)
def test_compile_rejects_unknown_names(random_data, kwargs, message):
    _, _, cols, hist = random_data
    if kwargs.pop("_drop_user", False):
        cols = [c for c in cols if c.name != "user_id"]
    with pytest.raises(ValueError, match=message):
        DIN(cols, hist).compile(**kwargs)


def test_gauc_can_group_by_a_column_that_is_not_a_model_input(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam", metrics=["gauc"], gauc_group="session")
    session = np.arange(len(y)) % 4
    result = model.evaluate({**x, "session": session}, y)
    assert result["gauc"] == pytest.approx(gauc(y, model.predict(x), session))


def test_fit_before_compile_and_without_labels(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y)
    model.compile("adam")
    with pytest.raises(ValueError, match="y"):
        model.fit(x)
    with pytest.raises(ValueError, match="labels have 3 rows"):
        model.fit(x, y[:3])


def test_bad_input_fails_before_any_step(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist)
    model.compile("adam")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = dict(x)
    bad["hist_cate_id"] = bad["hist_cate_id"].astype(float) + 0.5
    with pytest.raises(ValueError, match="'hist_cate_id'"):
        model.fit(bad, y, verbose=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _FixedLogits(torch.nn.Module):
    """Logits = the batch's "z" column: [B, 1] (a model with nothing to train)."""

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return feats["z"]


def test_evaluate_model_scores_without_an_optimizer_and_restores_the_mode() -> None:
    # Logits 2, -1, 0.5, 0 with labels 1, 0, 0, 1; users a = rows 0-1, b = rows 2-3.
    # AUC: positives (s(2), s(0)) over negatives (s(-1), s(0.5)): 3 of 4 pairs right.
    # GAUC: user a 1.0, user b 0.0, 2 rows each -> 0.5. loss: -log s(z) = log1p(e^-z) for a
    # positive, log1p(e^z) for a negative.
    model = _FixedLogits().train()
    feats = {"z": torch.tensor([[2.0], [-1.0], [0.5], [0.0]]),
             "uid": torch.tensor([7, 7, 9, 9])}
    source = TensorBatches(feats, torch.tensor([[1.0], [0.0], [0.0], [1.0]]), 3, False)
    out = evaluate_model(model, source, resolve_metrics(["auc", "gauc"]), "uid")
    loss = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log1p(math.exp(0.5))
            + math.log(2.0)) / 4
    assert out == pytest.approx({"loss": loss, "auc": 0.75, "gauc": 0.5}, abs=1e-6)
    assert model.training  # eval mode inside, the previous mode after
