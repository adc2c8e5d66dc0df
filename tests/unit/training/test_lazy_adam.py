"""LazyAdam: dense Adam where gradients are dense, row-wise Adam where they are sparse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.models import DIN
from dinrec.training.lazy_adam import LazyAdam
from dinrec.training.optimizers import make_optimizer


def _sparse(rows: list[int], values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape, check_invariants=True)


def test_first_sparse_step_moves_present_rows_by_lr_times_the_gradient_sign() -> None:
    w = torch.nn.Parameter(torch.zeros(4, 2))
    opt = LazyAdam([w], lr=0.1)
    w.grad = _sparse([1, 3], torch.tensor([[0.5, -2.0], [4.0, 0.25]]), (4, 2))
    opt.step()
    # Step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
    eps = 1e-8
    want = torch.tensor([
        [0.0, 0.0],
        [-0.1 * 0.5 / (0.5 + eps), 0.1 * 2.0 / (2.0 + eps)],
        [0.0, 0.0],
        [-0.1 * 4.0 / (4.0 + eps), -0.1 * 0.25 / (0.25 + eps)],
    ])
    assert torch.allclose(w.detach(), want, atol=1e-7)
    state = opt.state[w]
    assert state["exp_avg"][0].tolist() == [0.0, 0.0]  # absent rows keep zero moments
    assert state["exp_avg"][1].tolist() == pytest.approx([0.05, -0.2])
    assert state["exp_avg_sq"][3].tolist() == pytest.approx([0.001 * 16.0, 0.001 * 0.0625])


def test_duplicate_ids_are_summed_like_a_dense_gradient() -> None:
    w = torch.nn.Parameter(torch.zeros(3, 1))
    opt = LazyAdam([w], lr=1.0)
    w.grad = _sparse([2, 2], torch.tensor([[1.0], [2.0]]), (3, 1))
    opt.step()
    assert opt.state[w]["exp_avg"][2].item() == pytest.approx(0.1 * 3.0)


def test_rows_present_every_step_follow_dense_adam_and_absent_rows_never_move() -> None:
    torch.manual_seed(0)
    start = torch.randn(6, 3)
    lazy_w = torch.nn.Parameter(start.clone())
    dense_w = torch.nn.Parameter(start[:4].clone())
    lazy, dense = LazyAdam([lazy_w], lr=0.05), torch.optim.Adam([dense_w], lr=0.05)
    for _ in range(5):
        g = torch.randn(4, 3)
        lazy_w.grad = _sparse([0, 1, 2, 3], g, (6, 3))
        dense_w.grad = g.clone()
        lazy.step()
        dense.step()
    assert torch.allclose(lazy_w[:4].detach(), dense_w.detach(), atol=1e-6)
    assert torch.equal(lazy_w[4:].detach(), start[4:])  # never in a gradient


def test_dense_parameters_match_torch_adam_and_the_state_dict_round_trips() -> None:
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(5, 2))
    b = torch.nn.Parameter(a.detach().clone())
    lazy, ref = LazyAdam([a], lr=0.01, fused=True), torch.optim.Adam([b], lr=0.01)
    for _ in range(3):
        g = torch.randn(5, 2)
        a.grad, b.grad = g.clone(), g.clone()
        lazy.step()
        ref.step()
    assert torch.allclose(a.detach(), b.detach(), atol=1e-6)
    again = LazyAdam([torch.nn.Parameter(a.detach().clone())], lr=0.01, fused=True)
    again.load_state_dict(lazy.state_dict())
    assert float(next(iter(again.state.values()))["step"]) == 3.0


def test_make_optimizer_picks_lazy_adam_for_sparse_tables_and_names_the_ones_that_cannot() -> None:
    table = torch.nn.Parameter(torch.zeros(3, 2))
    dense = torch.nn.Parameter(torch.zeros(2))
    assert isinstance(make_optimizer("adam", [table, dense], sparse_params=[table]), LazyAdam)
    assert isinstance(make_optimizer("sgd", [table, dense], sparse_params=[table]),
                      torch.optim.SGD)
    with pytest.raises(ValueError, match="'rmsprop' cannot take the sparse embedding"):
        make_optimizer("rmsprop", [table, dense], sparse_params=[table])


def _columns() -> list:
    return [
        SparseFeat("user_id", 5, embedding_dim=3),
        SparseFeat("item_id", 12, embedding_dim=3),
        VarLenSparseFeat(SparseFeat("hist_item_id", 12, 3, embedding_name="item_id"), 4),
    ]


def test_sparse_embeddings_refuse_full_table_l2_naming_the_settings() -> None:
    with pytest.raises(ValueError, match="sparse_embeddings=True with l2_reg_embedding=1e-06"):
        DIN(_columns(), ["item_id"], sparse_embeddings=True, l2_reg_embedding=1e-6)
    DIN(_columns(), ["item_id"], sparse_embeddings=True)  # the default regularization is MBA
    DIN(_columns(), ["item_id"], sparse_embeddings=True, l2_reg_embedding=0.0)
    DIN(_columns(), ["item_id"], sparse_embeddings=True, embedding_regularization="mba")


def test_sparse_mba_gradient_equals_the_dense_one() -> None:
    from dinrec.training.regularization import Regularizer

    batch = {"user_id": torch.tensor([1, 2]), "item_id": torch.tensor([3, 3]),
             "hist_item_id": torch.tensor([[4, 5, 0, 0], [3, 0, 0, 0]])}
    freq = {"user_id": torch.tensor([0.0, 2.0, 4.0, 1.0, 1.0]),
            "item_id": torch.arange(12, dtype=torch.float32)}
    grads, values = [], []
    for sparse in (False, True):
        model = DIN(_columns(), ["item_id"], embedding_regularization="mba", mba_lambda=0.5,
                    init_std=0.3, sparse_embeddings=sparse, seed=5)
        reg = Regularizer(model, freq)
        assert reg.batch_penalty(batch).item() == 0.0  # MBA adds its gradient directly
        values.append(reg(batch).item())
        assert reg.add_direct_gradients(batch) == pytest.approx(values[-1], rel=1e-6)
        w = model.embeddings.table("item_id").weight
        assert w.grad is not None and w.grad.is_sparse is sparse
        grads.append(w.grad.to_dense())
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    assert values[0] == pytest.approx(values[1])
    assert grads[1][[0, 1, 2, 6]].abs().sum().item() == 0.0  # not in the batch


def test_din_with_sparse_embeddings_and_adam_trains_and_leaves_unseen_rows_alone() -> None:
    rng = np.random.default_rng(0)
    n = 64
    x = {"user_id": rng.integers(1, 5, n), "item_id": rng.integers(1, 8, n),
         "hist_item_id": rng.integers(0, 8, (n, 4))}
    y = (x["item_id"] % 2).astype(np.float32)
    model = DIN(_columns(), ["item_id"], sparse_embeddings=True, embedding_regularization="mba",
                init_std=0.1, att_hidden_size=(8,), dnn_hidden_units=(8,), seed=2)
    model.compile("adam", "binary_crossentropy", lr=0.05)
    assert isinstance(model.trainer.optimizer, LazyAdam)
    before = model.embeddings.table("item_id").weight.detach().clone()
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    after = model.embeddings.table("item_id").weight.detach()
    assert torch.equal(after[8:], before[8:])  # ids 8..11 never occur
    assert not torch.equal(after[1:8], before[1:8])
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_lazy_adam_names_a_bad_setting() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"invalid lr=-0\.1"):
        LazyAdam([w], lr=-0.1)
    with pytest.raises(ValueError, match=r"betas=\(0.9, 1.0\)"):
        LazyAdam([w], betas=(0.9, 1.0))
