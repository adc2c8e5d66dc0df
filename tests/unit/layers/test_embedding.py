from __future__ import annotations

import torch
import torch.nn.functional as F

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.embedding import EmbeddingBank
from dinrec.schema import FeatureSchema


def bank(sparse_grad: bool = False) -> EmbeddingBank:
    cols = [
        SparseFeat("item_id", 6, embedding_dim=3),
        VarLenSparseFeat(SparseFeat("hist_item_id", 6, 3, embedding_name="item_id"), maxlen=4),
    ]
    return EmbeddingBank(FeatureSchema.resolve(cols, ["item_id"]), init_std=1.0,
                         sparse_grad=sparse_grad)


def test_lookup_values_and_gradient_equal_nn_embedding():
    b = bank()
    weight = b.table("item_id").weight
    ids = torch.tensor([[1, 2, 2, 0], [5, 1, 0, 0]])
    upstream = torch.randn(2, 4, 3)
    out = b.lookup("hist_item_id", ids)
    assert torch.equal(out, F.embedding(ids, weight))
    (out * upstream).sum().backward()
    assert weight.grad is not None
    ref = torch.zeros_like(weight).index_put_((ids.reshape(-1),), upstream.reshape(-1, 3),
                                              accumulate=True)
    assert torch.allclose(weight.grad, ref, atol=1e-6)
    assert torch.count_nonzero(weight.grad[3]).item() == 0


def test_sparse_tables_keep_sparse_gradients():
    b = bank(sparse_grad=True)
    b.lookup("item_id", torch.tensor([1, 4])).sum().backward()
    grad = b.table("item_id").weight.grad
    assert grad is not None and grad.is_sparse
