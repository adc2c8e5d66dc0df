from __future__ import annotations

import numpy as np
import pytest
import torch

import dinrec
from dinrec.inputs import prepare_inputs
from dinrec.models import DIN, EmbeddingMLP


def trained(model, x, y, epochs=2):
    model.compile("adam", "binary_crossentropy", metrics=["auc"], lr=1e-2)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return model


def test_forward_returns_logits_of_shape_b_by_1(seed_data):
    x, _, cols, hist = seed_data
    model = DIN(cols, hist)
    logits = model(prepare_inputs(model.schema, x))
    assert logits.shape == (3, 1)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())


def test_same_seed_gives_same_initial_weights(seed_data):
    _, _, cols, hist = seed_data
    a, b = DIN(cols, hist, seed=7), DIN(cols, hist, seed=7)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka


def test_padded_history_rows_get_no_gradient(seed_data):
    x, _y, cols, hist = seed_data
    x = dict(x)
    # Row 2's third slot holds id 3 but seq_length says 2: it is padding; item 3 is used
    # nowhere else once rows 0 and 1 no longer mention it.
    x["item_id"] = np.array([1, 2, 2])
    x["hist_item_id"] = np.array([[1, 2, 0, 0], [2, 1, 0, 0], [1, 2, 3, 0]])
    x["seq_length"] = np.array([2, 2, 2])
    model = DIN(cols, hist, init_std=0.1)
    feats = prepare_inputs(model.schema, x)
    model(feats).sum().backward()
    grad = model.embeddings.table("item_id").weight.grad
    assert grad is not None
    assert torch.count_nonzero(grad[3]).item() == 0
    assert torch.count_nonzero(grad[0]).item() == 0
    assert torch.count_nonzero(grad[1]).item() > 0


def test_attention_weight_of_padding_is_exactly_zero(random_data):
    x, y, cols, hist = random_data
    model = trained(DIN(cols, hist, init_std=0.05), x, y)
    feats = prepare_inputs(model.schema, x)
    with torch.no_grad():
        _, weights = model.interest(feats)
    pad = feats["hist_item_id"] == 0
    assert pad.any()
    assert torch.count_nonzero(weights[pad]).item() == 0


def test_permuting_valid_history_leaves_score_unchanged(random_data):
    x, y, cols, hist = random_data
    model = trained(DIN(cols, hist, init_std=0.05), x, y)
    rng = np.random.default_rng(3)
    hi, hc = x["hist_item_id"].copy(), x["hist_cate_id"].copy()
    for r in range(len(hi)):
        n = int((hi[r] != 0).sum())
        perm = rng.permutation(n)
        hi[r, :n], hc[r, :n] = hi[r, :n][perm], hc[r, :n][perm]
    x2 = {**x, "hist_item_id": hi, "hist_cate_id": hc}
    assert not np.array_equal(hi, x["hist_item_id"])
    np.testing.assert_allclose(model.predict(x), model.predict(x2), atol=1e-6)


@pytest.mark.parametrize("cls", [DIN, EmbeddingMLP])
def test_predict_is_batch_size_invariant_and_restores_mode(random_data, cls):
    x, y, cols, hist = random_data
    model = trained(cls(cols, hist, dnn_use_bn=True, init_std=0.05), x, y)
    model.train()
    full = model.predict(x, batch_size=64)
    assert model.training
    for bs in (1, 5, 17):
        np.testing.assert_allclose(model.predict(x, batch_size=bs), full, atol=1e-6)
    alone = model.predict({k: v[:1] for k, v in x.items()})
    np.testing.assert_allclose(alone, full[:1], atol=1e-6)
    assert full.shape == (len(y), 1) and full.dtype == np.float32
    assert ((full > 0) & (full < 1)).all()


def test_base_model_sum_pools_history(random_data):
    x, _, cols, hist = random_data
    model = EmbeddingMLP(cols, hist, init_std=0.1)
    feats = prepare_inputs(model.schema, x)
    with torch.no_grad():
        pooled, weights = model.interest(feats)
        keys = model.keys(feats)
    mask = (feats["hist_item_id"] != 0).unsqueeze(-1)
    assert torch.allclose(pooled, (keys * mask).sum(1), atol=1e-6)
    assert torch.equal(weights, mask.squeeze(-1).float())


def test_interest_changes_with_the_candidate(random_data):
    x, y, cols, hist = random_data
    model = trained(DIN(cols, hist, init_std=0.05), x, y)
    feats = prepare_inputs(model.schema, {k: v[:1] for k, v in x.items()})
    other = dict(feats)
    other["item_id"] = (feats["item_id"] % 29) + 1
    with torch.no_grad():
        a, _ = model.interest(feats)
        b, _ = model.interest(other)
    assert not torch.allclose(a, b)


def test_save_and_load_give_identical_predictions(tmp_path, random_data):
    x, y, cols, hist = random_data
    model = trained(DIN(cols, hist, att_activation="dice", dnn_activation="prelu"), x, y)
    path = model.save(tmp_path / "bundle")
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "model_config.json",
        "schema.json",
        "weights.safetensors",
    ]
    loaded = dinrec.load_model(path)
    assert type(loaded) is DIN and not loaded.training
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.config == model.config


def test_unknown_model_setting_is_named(seed_data):
    _, _, cols, hist = seed_data
    with pytest.raises(ValueError, match="att_activation: unknown activation 'swish'"):
        DIN(cols, hist, att_activation="swish")
    with pytest.raises(ValueError, match="embedding_regularization"):
        DIN(cols, hist, embedding_regularization="l1")


def test_embedding_regularization_defaults_to_mba_unless_l2_is_given() -> None:
    from dinrec.models.config import DEFAULT_INIT_STD, DEFAULT_MBA_LAMBDA, ModelConfig

    cfg = ModelConfig()
    assert (cfg.embedding_regularization, cfg.l2_reg_embedding) == ("mba", 0.0)
    assert cfg.resolved_mba_lambda == DEFAULT_MBA_LAMBDA == 1.0
    assert cfg.init_std == DEFAULT_INIT_STD == 0.05
    # DeepCTR code that sets l2_reg_embedding keeps DeepCTR's full-table L2 at that strength.
    given = ModelConfig(l2_reg_embedding=1e-5)
    assert (given.embedding_regularization, given.l2_reg_embedding) == ("l2", 1e-5)
    assert ModelConfig(embedding_regularization="l2").l2_reg_embedding == 1e-6
    # Stored resolved: a saved config reads back the same, whatever the defaults become.
    assert cfg.to_dict()["embedding_regularization"] == "mba"
    assert ModelConfig.from_dict(given.to_dict()) == given
