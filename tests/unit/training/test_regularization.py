from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.inputs import prepare_inputs
from dinrec.models import DIN
from dinrec.training.batches import TensorBatches
from dinrec.training.regularization import Regularizer, count_frequencies, table_ids


def small_batch(seed_data, model):
    x = seed_data[0]
    return prepare_inputs(model.schema, x)


def test_frequencies_count_every_occurrence_but_padding(seed_data):
    x, _, cols, hist = seed_data
    model = DIN(cols, hist)
    source = TensorBatches(prepare_inputs(model.schema, x), torch.zeros(3), batch_size=2)
    freq = count_frequencies(model, source)
    # item table: candidates [1, 2, 3] + histories [1,2,3], [3,2,1], [1,2] (lengths 3, 3, 2)
    assert freq["item_id"].tolist() == [0.0, 4.0, 4.0, 3.0]
    # cate table: candidates [1, 2, 2] + histories [1,2,2], [2,2,1], [1,2]
    assert freq["cate_id"].tolist() == [0.0, 4.0, 7.0]
    assert freq["user"].tolist() == [1.0, 1.0, 1.0]


def test_table_ids_drop_padding_by_length(seed_data):
    _x, _, cols, hist = seed_data
    model = DIN(cols, hist)
    ids = table_ids(model, small_batch(seed_data, model))
    assert sorted(ids["item_id"].tolist()) == sorted([1, 2, 3, 1, 2, 3, 3, 2, 1, 1, 2])


def test_mba_gradient_touches_only_in_batch_rows_scaled_by_inverse_frequency():
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat

    cols = [
        SparseFeat("item_id", 6, embedding_dim=3),
        VarLenSparseFeat(SparseFeat("hist_item_id", 6, 3, embedding_name="item_id"), 3),
    ]
    lam = 0.5
    model = DIN(cols, ["item_id"], embedding_regularization="mba", mba_lambda=lam, init_std=0.3)
    freq = {"item_id": torch.tensor([0.0, 2.0, 4.0, 1.0, 8.0, 5.0])}
    reg = Regularizer(model, freq)
    batch = {
        "item_id": torch.tensor([2, 2]),
        "hist_item_id": torch.tensor([[1, 2, 0], [4, 0, 0]]),
    }
    penalty = reg(batch)
    w = model.embeddings.table("item_id").weight
    expected = lam * sum(
        float(w[j].detach().pow(2).sum()) / float(freq["item_id"][j]) for j in (1, 2, 4)
    )
    assert penalty.item() == pytest.approx(expected, rel=1e-6)
    penalty.backward()
    assert w.grad is not None
    for j in (0, 3, 5):  # not in the batch (0 is padding)
        assert torch.count_nonzero(w.grad[j]).item() == 0
    for j in (1, 2, 4):  # id 2 occurs 3 times but is penalised once, by 1/n_2
        want = 2 * lam * w[j].detach() / freq["item_id"][j]
        assert torch.allclose(w.grad[j], want, rtol=1e-6)


def test_full_l2_touches_every_row(seed_data):
    _x, _, cols, hist = seed_data
    model = DIN(cols, hist, l2_reg_embedding=0.1, init_std=0.3)
    reg = Regularizer(model)
    reg(small_batch(seed_data, model)).backward()
    w = model.embeddings.table("item_id").weight
    assert w.grad is not None
    assert torch.allclose(w.grad, 0.2 * w.detach())


def test_dnn_l2_only_on_mlp_weights(seed_data):
    _, _, cols, hist = seed_data
    model = DIN(cols, hist, l2_reg_embedding=0.0, l2_reg_dnn=0.01)
    expected = 0.01 * sum(float(lin.weight.detach().pow(2).sum()) for lin in model.mlp.linears)
    assert Regularizer(model)({}).item() == pytest.approx(expected, rel=1e-5)


def test_mba_needs_frequencies(seed_data):
    _, _, cols, hist = seed_data
    model = DIN(cols, hist, embedding_regularization="mba")
    with pytest.raises(ValueError, match="frequencies"):
        Regularizer(model)


def test_fit_with_mba_trains(random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist, embedding_regularization="mba")
    model.compile("adam", metrics=["auc"])
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()


def test_direct_l2_gradients_equal_backpropagating_the_penalty(seed_data):
    _x, _, cols, hist = seed_data
    model = DIN(cols, hist, l2_reg_embedding=0.1, l2_reg_dnn=0.01, init_std=0.3)
    reg = Regularizer(model)
    batch = small_batch(seed_data, model)
    penalty = reg(batch)
    penalty.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert reg.batch_penalty(batch).item() == 0.0
    assert reg.add_direct_gradients() == pytest.approx(penalty.item(), rel=1e-5)
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert sorted(got) == sorted(want)
    for name, grad in want.items():
        assert torch.allclose(got[name], grad, rtol=1e-6, atol=1e-9), name


def test_mba_gradient_is_added_directly_and_equals_backpropagating_the_penalty():
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat

    cols = [
        SparseFeat("item_id", 4, embedding_dim=2),
        VarLenSparseFeat(SparseFeat("hist_item_id", 4, 2, embedding_name="item_id"), 2),
    ]
    model = DIN(cols, ["item_id"], embedding_regularization="mba", init_std=0.3)
    freq = torch.tensor([0.0, 2.0, 4.0, 1.0])
    reg = Regularizer(model, {"item_id": freq})
    batch = {"item_id": torch.tensor([1, 2]), "hist_item_id": torch.tensor([[2, 0], [1, 2]])}
    w = model.embeddings.table("item_id").weight
    penalty = reg(batch)  # lambda * (||w_1||^2 / 2 + ||w_2||^2 / 4): each present id once
    rows = w.detach()
    want_value = 1.0 * (rows[1].pow(2).sum() / 2 + rows[2].pow(2).sum() / 4)
    assert penalty.item() == pytest.approx(want_value.item(), rel=1e-6)
    penalty.backward()
    want = w.grad.clone()
    model.zero_grad(set_to_none=True)
    assert reg.batch_penalty(batch).item() == 0.0
    assert reg.add_direct_gradients(batch) == pytest.approx(penalty.item(), rel=1e-6)
    assert torch.allclose(w.grad, want, atol=1e-8)
    assert w.grad[[0, 3]].abs().sum().item() == 0.0  # rows not in the batch: untouched


def test_present_rows_equals_unique_for_small_and_huge_tables():
    from dinrec.training.regularization import present_rows

    ids = torch.tensor([5, 1, 5, 3, 1, 0])
    assert present_rows(ids, 6).tolist() == [0, 1, 3, 5]  # presence mask path
    assert present_rows(ids, 1000).tolist() == [0, 1, 3, 5]  # sort path (huge table)
    assert present_rows(torch.tensor([], dtype=torch.int64), 4).tolist() == []
