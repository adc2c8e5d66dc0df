"""Several attended histories (DIN's history_groups): masks, units, shared tables, bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.bundle import load_model
from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.inputs import prepare_inputs
from dinrec.models import DIN, EmbeddingMLP
from dinrec.training.regularization import table_ids

SMALL = {"att_hidden_size": (4,), "dnn_hidden_units": (4,), "init_std": 0.5}


def _seq(name, table, size, maxlen=4, length_name=None):
    return VarLenSparseFeat(SparseFeat(name, size, 3, embedding_name=table), maxlen=maxlen,
                            length_name=length_name)


def columns(click_prefix="hist_", buy=True, buy_length=None):
    cols = [SparseFeat("item_id", 6, 3), SparseFeat("cate_id", 4, 3),
            _seq(click_prefix + "item_id", "item_id", 6),
            _seq(click_prefix + "cate_id", "cate_id", 4)]
    if buy:
        cols.append(_seq("buy_hist_item_id", "item_id", 6, maxlen=3, length_name=buy_length))
    return cols


def inputs(n_buy=3):
    x = {
        "item_id": np.array([1, 2, 3]),
        "cate_id": np.array([1, 1, 2]),
        "hist_item_id": np.array([[1, 2, 0, 0], [2, 3, 4, 0], [5, 0, 0, 0]]),
        "hist_cate_id": np.array([[1, 1, 0, 0], [1, 2, 2, 0], [3, 0, 0, 0]]),
        "buy_hist_item_id": np.array([[2, 0, 0], [4, 5, 0], [0, 0, 0]])[:, :n_buy],
        "buy_len": np.array([1, 2, 0]),
    }
    return x


def test_each_group_has_its_own_unit_and_interest_in_the_mlp_input():
    model = DIN(columns(), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]}, **SMALL)
    assert [g.name for g in model.schema.groups] == ["", "buy"]
    assert model.group_attention["buy"].unit.dim == 3
    assert model.attention is not None and model.attention.unit.dim == 6
    # item 3 + cate 3 (candidate) + click interest 6 + buy interest 3
    assert model.schema.mlp_input_dim() == 15
    assert model.mlp.linears[0].in_features == 15
    assert model(prepare_inputs(model.schema, inputs())).shape == (3, 1)


def test_a_groups_padding_gets_exactly_zero_weight_and_changes_nothing():
    cols = columns(buy_length="buy_len")
    model = DIN(cols, ["item_id", "cate_id"], history_groups={"buy": ["item_id"]}, **SMALL)
    model.eval()
    x = inputs()
    feats = prepare_inputs(model.schema, x)
    buy = model.schema.groups[1]
    with torch.no_grad():
        _, weights = model.interest(feats, group=buy)
        before = model(feats)
    assert weights.shape == (3, 3)
    assert weights[0, 1:].tolist() == [0.0, 0.0]
    assert weights[1, 2].item() == 0.0
    assert weights[2].tolist() == [0.0, 0.0, 0.0]
    assert weights[0, 0].item() != 0.0
    # Ids past buy_len are padding: other ids there change no score.
    x["buy_hist_item_id"] = np.array([[2, 5, 5], [4, 5, 1], [3, 3, 3]])
    with torch.no_grad():
        after = model(prepare_inputs(model.schema, x))
    assert torch.equal(before, after)


def test_one_named_group_equals_deepctrs_history_bit_for_bit():
    x, y = inputs(), np.array([1.0, 0.0, 1.0])
    deepctr = DIN(columns(buy=False), ["item_id", "cate_id"], seed=3, **SMALL)
    named = DIN(columns("click_hist_", buy=False), [], history_groups={
        "click": ["item_id", "cate_id"]}, seed=3, **SMALL)
    xn = {("click_" + k if k.startswith("hist_") else k): v for k, v in x.items()}
    a = deepctr(prepare_inputs(deepctr.schema, x))
    b = named(prepare_inputs(named.schema, xn))
    assert torch.equal(a, b)
    for model, data in ((deepctr, x), (named, xn)):
        model.compile("adam", "binary_crossentropy", lr=0.05)
        model.fit(data, y, batch_size=2, epochs=2, verbose=0, shuffle=False)
    np.testing.assert_array_equal(deepctr.predict(x), named.predict(xn))
    assert list(deepctr.state_dict())[:2] == list(named.state_dict())[:2]  # the tables
    assert "group_attention.click.unit.first.weight" in named.state_dict()


def test_groups_reading_one_table_share_it_and_mba_counts_both():
    model = DIN(columns(), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]}, **SMALL)
    assert sorted(model.schema.tables) == ["cate_id", "item_id"]
    assert model.schema.tables["item_id"].features == (
        "item_id", "hist_item_id", "buy_hist_item_id")
    feats = prepare_inputs(model.schema, inputs())
    ids = table_ids(model, feats)["item_id"]
    # candidates 1 2 3, click history 1 2 | 2 3 4 | 5, buys 2 | 4 5
    assert sorted(ids.tolist()) == [1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5]
    model(feats).sum().backward()
    grad = model.embeddings.table("item_id").weight.grad
    assert torch.count_nonzero(grad[0]).item() == 0  # padding only
    # Item 4 is a candidate nowhere: its gradient comes through both histories.
    assert torch.count_nonzero(grad[4]).item() > 0


def test_bundle_round_trips_the_groups(tmp_path):
    model = DIN(columns(buy_length="buy_len"), ["item_id", "cate_id"],
                history_groups={"buy": ["item_id"]}, **SMALL)
    x = inputs()
    model.save(tmp_path / "b")
    loaded = load_model(tmp_path / "b")
    assert loaded.schema.history_groups == (("buy", ("item_id",)),)
    assert loaded.schema.to_dict()["history_groups"] == {"buy": ["item_id"]}
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))


def test_deepctr_schema_json_has_no_groups_key():
    model = DIN(columns(buy=False), ["item_id", "cate_id"], **SMALL)
    assert "history_groups" not in model.schema.to_dict()


def test_dynamic_padding_cuts_each_group_to_its_own_width():
    model = DIN(columns(), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]}, **SMALL)
    from dinrec.layers.trim import trim_padding

    cut = trim_padding(prepare_inputs(model.schema, inputs()), model.sequence_groups)
    assert cut["hist_item_id"].shape == (3, 3)
    assert cut["buy_hist_item_id"].shape == (3, 2)


def test_the_base_model_sum_pools_each_group():
    model = EmbeddingMLP(columns(), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]},
                         dnn_hidden_units=(4,), init_std=0.5)
    feats = prepare_inputs(model.schema, inputs())
    pooled, weights = model.interest(feats, group=model.schema.groups[1])
    item = model.embeddings.table("item_id").weight
    assert torch.allclose(pooled[1], item[4] + item[5])
    assert weights[1].tolist() == [1.0, 1.0, 0.0]
    assert model.schema.mlp_input_dim() == 15


def test_category_search_runs_per_group_and_needs_the_feature_in_each():
    with pytest.raises(ValueError, match=r"history_search_feature='cate_id' is not in "
                                         r"history group 'buy' \['item_id'\]"):
        DIN(columns(), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]},
            history_search="category", history_search_feature="cate_id", **SMALL)
    model = DIN(columns(), ["item_id", "cate_id"], history_groups={"buy": ["item_id"]},
                history_search="category", history_search_feature="item_id",
                history_search_k=1, **SMALL)
    x = inputs()
    x["item_id"] = np.array([2, 5, 3])  # buys 2 | 4 5 | none: rows 0 and 1 match once
    _, weights = model.interest(prepare_inputs(model.schema, x), group=model.schema.groups[1])
    assert (weights != 0).tolist() == [[True, False, False], [False, True, False],
                                       [False, False, False]]


@pytest.mark.parametrize(("groups", "message"), [
    ({"buy": ["cate_id"]}, r"history group 'buy' 'cate_id' needs a VarLenSparseFeat named "
                           r"'buy_hist_cate_id'"),
    ({"buy": ["user_id"]}, r"history group 'buy' 'user_id' needs a SparseFeat named 'user_id'"),
    ({"1buy": ["item_id"]}, r"history group name '1buy' must start with a letter"),
    ({"buy": "item_id"}, r"history group 'buy': give a list of feature names"),
    ({"buy": []}, r"history group 'buy' needs distinct feature names"),
])
def test_bad_groups_are_errors_naming_the_group(groups, message):
    with pytest.raises(ValueError, match=message):
        DIN(columns(), ["item_id", "cate_id"], history_groups=groups, **SMALL)


def test_a_groups_sequences_must_share_one_maxlen():
    cols = [*columns(), _seq("buy_hist_cate_id", "cate_id", 4, maxlen=4)]
    with pytest.raises(ValueError, match=r"history group 'buy' sequences must share one maxlen"):
        DIN(cols, ["item_id"], history_groups={"buy": ["item_id", "cate_id"]}, **SMALL)
