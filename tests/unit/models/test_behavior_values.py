"""Per-behavior values (VarLenDenseFeat) entering their history's activation unit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.bundle import load_model
from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.inputs import prepare_inputs
from dinrec.layers.trim import trim_padding
from dinrec.models import DIN

SMALL = {"att_hidden_size": (4,), "dnn_hidden_units": (4,), "init_std": 0.5}


def columns(*extra):
    return [SparseFeat("item_id", 6, 3),
            VarLenSparseFeat(SparseFeat("hist_item_id", 6, 3, embedding_name="item_id"), 4),
            VarLenSparseFeat(SparseFeat("buy_hist_item_id", 6, 3, embedding_name="item_id"), 2),
            *extra]


def inputs():
    return {
        "item_id": np.array([1, 2]),
        "hist_item_id": np.array([[1, 2, 0, 0], [3, 0, 0, 0]]),
        "buy_hist_item_id": np.array([[2, 0], [4, 5]]),
        "hist_gap": np.array([[0.5, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]], dtype=np.float32),
        "buy_hist_gap": np.array([[[0.1, 1.0], [0.0, 0.0]], [[0.3, 0.0], [0.2, 1.0]]]),
    }


def grouped():
    return DIN(columns(VarLenDenseFeat("hist_gap", 4), VarLenDenseFeat("buy_hist_gap", 2, 2)),
               ["item_id"], history_groups={"buy": ["item_id"]}, **SMALL).eval()


def test_values_join_the_history_named_by_their_prefix():
    model = grouped()
    click, buy = model.schema.groups
    assert [c.name for c in click.side] == ["hist_gap"]
    assert [c.name for c in buy.side] == ["buy_hist_gap"]
    assert model.attention is not None
    assert model.attention.unit.first.in_features == 4 * 3 + 1
    assert model.group_attention["buy"].unit.first.in_features == 4 * 3 + 2
    # MLP input: item 3 + click interest 3 + its pooled gap 1 + buy interest 3 + gaps 2.
    assert model.mlp.linears[0].in_features == 12


def test_the_interest_ends_with_the_values_pooled_by_the_attention_weights():
    model = grouped()
    feats = prepare_inputs(model.schema, inputs())
    with torch.no_grad():
        interest, weights = model.interest(feats, group=model.schema.groups[1])
    assert interest.shape == (2, 5)
    expected = (weights.unsqueeze(-1) * feats["buy_hist_gap"]).sum(1)  # [B, 2]
    assert torch.allclose(interest[:, 3:], expected, atol=1e-6)


def test_the_base_model_sum_pools_the_values_with_the_keys():
    from dinrec.models import EmbeddingMLP

    model = EmbeddingMLP(columns(VarLenDenseFeat("hist_gap", 4)), ["item_id"],
                         dnn_hidden_units=(4,))
    pooled, _ = model.interest(prepare_inputs(model.schema, inputs()))
    assert pooled[:, 3].tolist() == [1.5, 2.0]


def test_a_valid_behaviors_value_changes_the_score_a_padded_ones_does_not():
    model = grouped()
    x = inputs()
    with torch.no_grad():
        base = model(prepare_inputs(model.schema, x))
        x["hist_gap"][0, 3] = 9.0  # padding of row 0
        x["buy_hist_gap"][0, 1] = [9.0, 9.0]
        padded = model(prepare_inputs(model.schema, x))
        x["hist_gap"][0, 1] = 9.0  # row 0's second click
        valid = model(prepare_inputs(model.schema, x))
    assert torch.equal(base, padded)
    assert valid[0].item() != base[0].item()
    assert valid[1].item() == base[1].item()


def test_values_are_cut_with_their_history_by_dynamic_padding():
    model = grouped()
    cut = trim_padding(prepare_inputs(model.schema, inputs()), model.sequence_groups)
    assert cut["hist_gap"].shape == (2, 2) and cut["hist_item_id"].shape == (2, 2)
    assert cut["buy_hist_gap"].shape == (2, 2, 2)


def test_values_train_and_round_trip_through_the_bundle(tmp_path):
    model = grouped()
    x, y = inputs(), np.array([1.0, 0.0])
    model.compile("adam", "binary_crossentropy", lr=0.05)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    model.save(tmp_path / "b")
    loaded = load_model(tmp_path / "b")
    assert isinstance(loaded.schema.column("buy_hist_gap"), VarLenDenseFeat)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))


def test_a_value_outside_every_history_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"VarLenDenseFeat 'gap' belongs to no attended "
                                         r"history: name it with one of the prefixes"):
        DIN(columns(VarLenDenseFeat("gap", 4)), ["item_id"], **SMALL)
    with pytest.raises(ValueError, match=r"history features must share one maxlen, got "
                                         r"hist_item_id=4, hist_gap=3"):
        DIN(columns(VarLenDenseFeat("hist_gap", 3)), ["item_id"], **SMALL)


def test_a_wrong_shape_is_an_error_naming_the_value():
    model = DIN(columns(VarLenDenseFeat("hist_gap", 4)), ["item_id"], **SMALL)
    x = inputs()
    x["hist_gap"] = x["hist_gap"][:, :3]
    with pytest.raises(ValueError, match=r"feature 'hist_gap': expected shape \(2, 4\), "
                                         r"got \(2, 3\)"):
        prepare_inputs(model.schema, x)
