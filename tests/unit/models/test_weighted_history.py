"""weight_name on a history sequence: each behavior weighs w_t in its history's interest."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from dinrec.bundle import load_model
from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.inputs import prepare_inputs
from dinrec.models import DIN, EmbeddingMLP

SMALL = {"att_hidden_size": (4,), "dnn_hidden_units": (4,), "init_std": 0.5}


def _hist(name: str, table: str, rows: int, dim: int, **kwargs: Any) -> VarLenSparseFeat:
    return VarLenSparseFeat(SparseFeat(name, rows, dim, embedding_name=table), maxlen=4,
                            **kwargs)


def columns(item_weight: str | None = "hist_w", cate_weight: str | None = None,
            weight_norm: bool = False) -> list[Any]:
    return [SparseFeat("item_id", 6, 3), SparseFeat("cate_id", 4, 2),
            _hist("hist_item_id", "item_id", 6, 3, weight_name=item_weight,
                  weight_norm=weight_norm),
            _hist("hist_cate_id", "cate_id", 4, 2, weight_name=cate_weight,
                  weight_norm=weight_norm)]


def inputs(hist: list[list[int]], weights: list[list[float]]) -> dict[str, np.ndarray]:
    items = np.array(hist)
    n = len(hist)
    return {"item_id": np.array([1, 2, 5][:n]), "cate_id": np.array([1, 2, 3][:n]),
            "hist_item_id": items, "hist_cate_id": np.where(items > 0, items % 3 + 1, 0),
            "hist_w": np.array(weights, dtype=np.float32)}


def model_of(**kwargs: Any) -> Any:
    return DIN(columns(**kwargs), ["item_id", "cate_id"], **SMALL).eval()


def logits(model: Any, x: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(prepare_inputs(model.schema, x)).numpy()


def test_behavior_weights_change_the_scores_without_a_warning(recwarn):
    model = model_of()
    assert not [w for w in recwarn.list if "weight_name" in str(w.message)]
    ones = logits(model, inputs([[1, 2, 0, 0]], [[1, 1, 1, 1]]))
    assert not np.allclose(ones, logits(model, inputs([[1, 2, 0, 0]], [[7, 1, 1, 1]])))


def test_weight_zero_equals_the_behavior_removed():
    model = model_of()
    weighted = logits(model, inputs([[1, 2, 3, 0]], [[1, 0, 1, 1]]))
    removed = logits(model, inputs([[1, 3, 0, 0]], [[1, 1, 1, 1]]))
    np.testing.assert_allclose(weighted, removed, atol=1e-6)


def test_weight_two_equals_the_behavior_given_twice():
    model = model_of()
    weighted = logits(model, inputs([[4, 2, 0, 0]], [[2, 1, 1, 1]]))
    repeated = logits(model, inputs([[4, 4, 2, 0]], [[1, 1, 1, 1]]))
    np.testing.assert_allclose(weighted, repeated, atol=1e-6)


def test_padding_contributes_nothing_whatever_its_weight():
    model = model_of()
    ones = logits(model, inputs([[4, 2, 0, 0]], [[1, 1, 1, 1]]))
    np.testing.assert_array_equal(ones, logits(model, inputs([[4, 2, 0, 0]], [[1, 1, 5, 5]])))


def test_the_interest_is_the_weighted_sum_of_the_keys():
    model = model_of()
    feats = prepare_inputs(model.schema, inputs([[4, 2, 3, 0]], [[0.5, 2, 1, 5]]))
    plain = prepare_inputs(model.schema, inputs([[4, 2, 3, 0]], [[1, 1, 1, 1]]))
    with torch.no_grad():
        interest, weights = model.interest(feats)
        _, activation = model.interest(plain)
        keys = model.keys(feats)
    # Each behavior's weight is a_t * w_t: the activation unit's weight times its own.
    assert torch.allclose(weights, activation * torch.tensor([[0.5, 2, 1, 0]]), atol=1e-6)
    assert torch.allclose(interest, torch.bmm(weights.unsqueeze(1), keys)[:, 0], atol=1e-6)


def test_weight_norm_softmaxes_the_behavior_weights_over_the_valid_ones():
    model = model_of(weight_norm=True)
    x = inputs([[4, 2, 3, 0]], [[0.0, np.log(2.0), np.log(3.0), 9.0]])
    got = model.behavior_weights(prepare_inputs(model.schema, x),
                                 torch.tensor([[True, True, True, False]]))
    assert got is not None and got[0].tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 0.0])


def test_one_weight_column_weights_the_whole_behavior_item_and_category():
    # Named on hist_item_id only, or on both sequences: the same model, the same numbers.
    x = inputs([[4, 2, 3, 0], [1, 0, 0, 0]], [[0.5, 2, 1, 1], [3, 1, 1, 1]])
    one, both = model_of(), model_of(cate_weight="hist_w")
    np.testing.assert_array_equal(logits(one, x), logits(both, x))
    with torch.no_grad():
        interest, _ = one.interest(prepare_inputs(one.schema, x))
    # The category's part of the interest [3:] is weighted too: w = 3 on a lone behavior.
    feats = prepare_inputs(one.schema, {**x, "hist_w": np.ones((2, 4), np.float32)})
    with torch.no_grad():
        unweighted, _ = one.interest(feats)
    assert torch.allclose(interest[1], 3 * unweighted[1], atol=1e-6)


@pytest.mark.parametrize(("cate_weight", "norm"), [("hist_w2", False), ("hist_w", True)])
def test_two_weightings_of_one_history_are_refused_naming_both(cate_weight, norm):
    cols = columns(cate_weight=cate_weight)
    cols[3] = _hist("hist_cate_id", "cate_id", 4, 2, weight_name=cate_weight, weight_norm=norm)
    with pytest.raises(ValueError, match=r"'hist_item_id' \(weight_name='hist_w'.*and "
                                         r"'hist_cate_id' \(weight_name="):
        DIN(cols, ["item_id", "cate_id"])


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_the_base_model_pools_the_weighted_keys(pooling):
    model = EmbeddingMLP(columns(), ["item_id", "cate_id"], dnn_hidden_units=(4,),
                         history_pooling=pooling).eval()
    feats = prepare_inputs(model.schema, inputs([[4, 2, 3, 0]], [[0.5, 2, 1, 5]]))
    with torch.no_grad():
        interest, weights = model.interest(feats)
        keys = model.keys(feats)
    w = torch.tensor([[0.5, 2.0, 1.0, 0.0]])
    want = (w.unsqueeze(-1) * keys).sum(1) / (3.0 if pooling == "mean" else 1.0)
    assert torch.allclose(interest, want, atol=1e-6)
    assert torch.allclose(weights, w / (3.0 if pooling == "mean" else 1.0))


def test_a_history_group_honours_its_weight_name():
    cols = [SparseFeat("item_id", 6, 3),
            _hist("hist_item_id", "item_id", 6, 3),
            _hist("buy_hist_item_id", "item_id", 6, 3, weight_name="buy_w", weight_norm=False)]
    model = DIN(cols, ["item_id"], history_groups={"buy": ["item_id"]}, **SMALL).eval()
    x = {"item_id": np.array([1]), "hist_item_id": np.array([[1, 2, 0, 0]]),
         "buy_hist_item_id": np.array([[4, 2, 0, 0]]), "buy_w": np.array([[2.0, 1, 1, 1]])}
    repeated = {**x, "buy_hist_item_id": np.array([[4, 4, 2, 0]]),
                "buy_w": np.ones((1, 4))}
    np.testing.assert_allclose(logits(model, x), logits(model, repeated), atol=1e-6)


def test_a_weight_that_is_also_a_value_enters_the_unit_and_weights_the_behavior():
    cols = [*columns(), VarLenDenseFeat("hist_w", 4)]
    model = DIN(cols, ["item_id", "cate_id"], **SMALL).eval()
    assert model.attention is not None
    assert model.attention.unit.first.in_features == 4 * 5 + 1
    x = inputs([[4, 2, 3, 0]], [[0.5, 2, 1, 5]])
    feats = prepare_inputs(model.schema, x)
    with torch.no_grad():
        interest, weights = model.interest(feats)
    # The pooled value part is sum_t (a_t w_t) w_t over the valid behaviors.
    expected = (weights * feats["hist_w"] * (feats["hist_item_id"] != 0)).sum(1)
    assert torch.allclose(interest[:, -1], expected, atol=1e-6)


def test_the_deepctr_style_example_trains_predicts_and_reloads(tmp_path):
    x = inputs([[1, 2, 3, 0], [3, 2, 0, 0], [1, 0, 0, 0]],
               [[1.0, 0.5, 2.0, 0.0], [0.2, 1.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    y = np.array([1, 0, 1])
    model = DIN(columns(weight_norm=True), ["item_id", "cate_id"], **SMALL)
    model.compile("adam", "binary_crossentropy", metrics=["auc"])
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    before = model.predict(x)
    assert before.shape == (3, 1) and np.isfinite(before).all()
    model.save(tmp_path / "bundle")
    np.testing.assert_allclose(load_model(tmp_path / "bundle").predict(x), before, atol=1e-6)
