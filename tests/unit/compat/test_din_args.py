"""DIN's arguments, DeepCTR's and DeepCTR-Torch's (mirroring their tests/models/DIN_test.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.inputs import prepare_inputs
from dinrec.layers.activation import Dice, PReLU
from dinrec.models import DIN

from ..conftest import random_history_data

SMALL = {"dnn_hidden_units": (4,), "att_hidden_size": (4,)}


@pytest.fixture
def data():
    return random_history_data(n=16, n_items=8, n_cates=3, maxlen=3)


def one_epoch(model: DIN, x, y, **fit) -> dict[str, list[float]]:
    model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
    return model.fit(x, y, batch_size=8, epochs=1, verbose=0, **fit).history


@pytest.mark.parametrize("name", ["dice", "Dice", "prelu", "PReLU", "relu", "sigmoid", "tanh",
                                  "linear"])
def test_every_activation_trains_in_attention_and_dnn(data, name):
    x, y, cols, hist = data
    model = DIN(cols, hist, dnn_activation=name, att_activation=name, **SMALL)
    kinds = {type(m) for m in model.modules()}
    expected = {"dice": Dice, "prelu": PReLU}.get(name.lower())
    if expected is not None:
        assert expected in kinds
    history = one_epoch(model, x, y)
    assert np.isfinite(history["loss"][0])
    assert model.predict(x).shape == (16, 1)


def test_an_unknown_activation_names_the_setting(data):
    _, _, cols, hist = data
    with pytest.raises(ValueError, match="att_activation: unknown activation 'gelu'"):
        DIN(cols, hist, att_activation="gelu")


def test_dnn_use_bn_adds_batch_norm_that_eval_uses_by_its_moving_statistics(data):
    x, y, cols, hist = data
    model = DIN(cols, hist, dnn_use_bn=True, **SMALL)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 1
    one_epoch(model, x, y)
    assert int(norms[0].num_batches_tracked) == 2
    whole = model.predict(x)
    np.testing.assert_allclose(model.predict({k: v[:1] for k, v in x.items()}), whole[:1],
                               rtol=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_att_weight_normalization_softmaxes_over_valid_behaviors(data, normalize):
    x, _, cols, hist = data
    model = DIN(cols, hist, att_weight_normalization=normalize, init_std=0.5, **SMALL)
    model.eval()
    inputs = prepare_inputs(model.schema, x)
    with torch.no_grad():
        _, weights = model.interest(inputs)  # [B, T]
    mask = model.history_mask(inputs)
    assert torch.all(weights[~mask] == 0)
    sums = weights.sum(dim=1)[mask.any(dim=1)]
    if normalize:
        torch.testing.assert_close(sums, torch.ones_like(sums))
    else:
        assert not torch.allclose(sums, torch.ones_like(sums))


def test_l2_reg_embedding_adds_lambda_times_the_squared_tables_to_the_loss(data):
    x, y, cols, hist = data
    losses, squares = [], 0.0
    for lam in (0.0, 0.5):
        model = DIN(cols, hist, l2_reg_embedding=lam, init_std=0.3, **SMALL)
        model.compile("sgd", lr=0.0)  # one step that changes nothing: the same weights
        losses.append(model.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0])
        squares = sum(float(t.weight.detach().square().sum())
                      for t in model.embeddings.tables.values())
    assert losses[1] - losses[0] == pytest.approx(0.5 * squares, rel=1e-4)


def test_init_std_is_the_std_of_the_embeddings():
    _, _, cols, hist = random_history_data(n=4, n_items=2000)
    table = DIN(cols, hist, init_std=0.25, **SMALL).embeddings.table("item_id").weight
    assert float(table.detach().std()) == pytest.approx(0.25, rel=0.05)


def test_seed_fixes_the_initial_weights(data):
    _, _, cols, hist = data
    a, b, c = (DIN(cols, hist, seed=s, **SMALL).state_dict() for s in (7, 7, 8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_dnn_dropout_is_on_in_training_and_off_in_predict(data):
    x, _, cols, hist = data
    model = DIN(cols, hist, dnn_dropout=0.5, init_std=0.5, **SMALL)
    inputs = prepare_inputs(model.schema, x)
    model.train()
    torch.manual_seed(0)
    first, second = model(inputs), model(inputs)
    assert not torch.equal(first, second)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


def test_deepctr_torch_s_din_call_works(data):
    x, y, cols, hist = data
    # DeepCTR-Torch's signature, every argument spelled out with its defaults.
    model = DIN(cols, hist, dnn_use_bn=False, dnn_hidden_units=(256, 128),
                dnn_activation="relu", att_hidden_size=(64, 16), att_activation="Dice",
                att_weight_normalization=False, l2_reg_dnn=0.0, l2_reg_embedding=1e-6,
                dnn_dropout=0, init_std=0.0001, seed=1024, task="binary", device="cpu",
                gpus=None)
    model.compile(torch.optim.Adam(model.parameters()), "binary_crossentropy",
                  metrics=["binary_crossentropy", "auc"])
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_split=0.25)
    assert set(history.history) == {"loss", "binary_crossentropy", "auc", "val_loss",
                                    "val_binary_crossentropy", "val_auc"}
    assert isinstance(model.trainer.optimizer, torch.optim.Adam)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), None])
def test_the_cpu_device_is_accepted(data, device):
    _, _, cols, hist = data
    assert DIN(cols, hist, device=device, **SMALL).embeddings.table("item_id").weight.is_cpu


def test_cuda_without_cuda_is_a_clear_error(data, monkeypatch):
    _, _, cols, hist = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda:0': CUDA is not available"):
        DIN(cols, hist, device="cuda:0")


def test_cuda_with_cuda_is_refused_by_name(data, monkeypatch):
    _, _, cols, hist = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"device='cuda'.*run on the CPU"):
        DIN(cols, hist, device="cuda")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"gpus": [0, 1]}, r"gpus=\[0, 1\]: DIN trains on one device"),
    ({"device": "gpu7"}, "device='gpu7' is not a torch device"),
    ({"task": "regression"}, "task must be one of"),
])
def test_other_torch_settings_are_refused_by_name(data, kwargs, message):
    _, _, cols, hist = data
    with pytest.raises(ValueError, match=message):
        DIN(cols, hist, **kwargs)
