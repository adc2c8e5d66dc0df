from __future__ import annotations

import pytest
import torch

from dinrec.layers.pooling import pool_sequence, sequence_mask


def test_mask_from_zero_ids_or_lengths():
    ids = torch.tensor([[3, 0, 0], [1, 2, 5]])
    assert sequence_mask(ids).tolist() == [[True, False, False], [True, True, True]]
    lengths = torch.tensor([2, 1])
    assert sequence_mask(ids, lengths).tolist() == [[True, True, False], [True, False, False]]


def test_sum_mean_max_over_valid_slots():
    emb = torch.tensor([[[1.0], [3.0], [100.0]], [[0.0], [0.0], [0.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert pool_sequence(emb, mask, "sum").tolist() == [[4.0], [0.0]]
    assert pool_sequence(emb, mask, "mean").tolist() == [[2.0], [0.0]]
    assert pool_sequence(emb, mask, "max").tolist() == [[3.0], [0.0]]


def test_weighted_pooling_normalises_over_valid_slots():
    emb = torch.tensor([[[2.0], [4.0], [8.0]]])
    mask = torch.tensor([[True, True, False]])
    w = torch.tensor([[0.0, 0.0, 9.0]])
    assert pool_sequence(emb, mask, "sum", w, weight_norm=True).tolist() == [[3.0]]
    raw = pool_sequence(emb, mask, "sum", torch.tensor([[1.0, 0.5, 9.0]]), weight_norm=False)
    assert raw.tolist() == [[4.0]]


def test_unknown_combiner_raises():
    with pytest.raises(ValueError, match="combiner 'avg'"):
        pool_sequence(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool), "avg")
