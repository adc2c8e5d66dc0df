"""The speed paths of the model give the results of the plain ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.inputs import prepare_inputs
from dinrec.models import DIN, EmbeddingMLP, network


def test_eval_forward_in_slices_equals_one_pass(monkeypatch, random_data):
    x, y, cols, hist = random_data
    model = DIN(cols, hist, init_std=0.05)
    model.compile("adam", metrics=["auc"], lr=1e-2)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.eval()
    feats = prepare_inputs(model.schema, x)
    with torch.no_grad():
        whole = model(feats)
        monkeypatch.setattr(network, "EVAL_CHUNK_ROWS", 7)  # 64 rows -> 10 slices
        sliced = model(feats)
    assert sliced.shape == (64, 1)
    np.testing.assert_allclose(sliced.numpy(), whole.numpy(), atol=1e-6)


def test_interest_weights_come_back_in_the_padded_layout(random_data):
    x, _y, cols, hist = random_data
    model = DIN(cols, hist, init_std=0.05)
    feats = prepare_inputs(model.schema, x)
    with torch.no_grad():
        interest, weights = model.interest(feats)
        keys, mask = model.keys(feats), model.history_mask(feats)
    assert weights.shape == mask.shape
    assert torch.allclose(interest, torch.bmm(weights.unsqueeze(1), keys).squeeze(1), atol=1e-6)
    assert torch.count_nonzero(weights[~mask]).item() == 0


def test_compile_dense_is_off_by_default_and_only_for_attention(random_data):
    _, _, cols, hist = random_data
    model = DIN(cols, hist)
    assert model.attention is not None and not model.attention.unit.compiled
    assert model.compile_dense() and model.attention.unit.compiled
    assert not EmbeddingMLP(cols, hist).compile_dense()


def test_bf16_attention_scores_stay_close_to_fp32(random_data):
    x, _y, cols, hist = random_data
    model = DIN(cols, hist, init_std=0.3)
    feats = prepare_inputs(model.schema, x)
    model.eval()
    with torch.no_grad():
        fp32 = model(feats)
        if not model.attention_bf16():
            assert model.attention is not None and model.attention.unit.matmul_dtype is None
            pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX): attention_bf16() "
                        "stays off, so there is no bf16 path to compare")
        assert model.attention is not None and model.attention.unit.matmul_dtype is torch.bfloat16
        low = model(feats)
    np.testing.assert_allclose(low.numpy(), fp32.numpy(), rtol=0.05, atol=2e-3)
    assert not model.attention_bf16(False) and model.attention.unit.matmul_dtype is None
