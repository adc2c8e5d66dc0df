"""Batches follow the model's device (training.device): the Trainer's plumbing, on CPU."""

from __future__ import annotations

import pytest
import torch

from dinrec.inputs import prepare_inputs, prepare_labels
from dinrec.models import DIN
from dinrec.training import evaluation as evaluation_module
from dinrec.training import trainer as trainer_module
from dinrec.training.batches import TensorBatches, module_device, to_device


def test_a_batch_already_on_the_device_is_returned_as_it_is() -> None:
    feats, labels = {"item_id": torch.arange(3)}, torch.zeros(3)
    out, y = to_device(feats, labels, torch.device("cpu"))
    assert out is feats and y is labels


def test_a_batch_moves_to_another_device() -> None:
    out, y = to_device({"item_id": torch.arange(3)}, torch.zeros(3), torch.device("meta"))
    assert out["item_id"].device.type == "meta" and y.device.type == "meta"
    assert out["item_id"].dtype == torch.int64 and out["item_id"].shape == (3,)


def test_module_device_is_where_the_parameters_are() -> None:
    assert module_device(torch.nn.Linear(2, 1)) == torch.device("cpu")
    assert module_device(torch.nn.Linear(2, 1, device="meta")) == torch.device("meta")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters


def test_fit_evaluate_and_predict_move_every_batch_to_the_model_device(
    random_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y, cols, hist = random_data
    model = DIN(cols, hist, embedding_regularization="mba")
    model.compile("adam", metrics=["auc"])
    seen: list[torch.device] = []
    real = trainer_module.to_device

    def spy(feats, labels, device):
        seen.append(device)
        return real(feats, labels, device)

    monkeypatch.setattr(trainer_module, "to_device", spy)
    monkeypatch.setattr(evaluation_module, "to_device", spy)
    source = TensorBatches(prepare_inputs(model.schema, x), prepare_labels(y, len(y)), 16)
    model.trainer.fit(source, 2, verbose=0)
    model.trainer.evaluate(source)
    evaluation_module.predict_logits(model, source)
    assert seen == [torch.device("cpu")] * (4 * len(source))  # 2 epochs, evaluate, predict
    freqs = model.trainer.regularizer.frequencies
    assert all(n.device == torch.device("cpu") for n in freqs.values())
