from __future__ import annotations

import copy

import pytest
import torch

from dinrec.layers import compiled
from dinrec.layers.attention import AttentionPooling


def pools() -> tuple[AttentionPooling, AttentionPooling]:
    torch.manual_seed(2)
    eager = AttentionPooling(6, (8, 4), "dice")
    fast = copy.deepcopy(eager)
    fast.unit.compile_packed()
    return eager, fast


def run(pool: AttentionPooling, q, keys, mask):
    q, keys = q.clone().requires_grad_(), keys.clone().requires_grad_()
    interest, weights = pool(q, keys, mask)
    interest.pow(2).sum().backward()
    return interest, weights, q.grad, keys.grad


def test_compiled_unit_matches_eager_in_training_and_eval():
    eager, fast = pools()
    for batch, length in ((4, 5), (7, 3)):  # a second packed size reuses the dynamic graph
        q, keys = torch.randn(batch, 6), torch.randn(batch, length, 6)
        mask = torch.rand(batch, length) < 0.7
        for a, b in zip(run(eager, q, keys, mask), run(fast, q, keys, mask), strict=True):
            assert a is not None and b is not None
            assert torch.allclose(a, b, atol=1e-5)
    for (name, a), (_, b) in zip(eager.named_parameters(), fast.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    for (name, a), (_, b) in zip(eager.named_buffers(), fast.named_buffers(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    eager.eval(), fast.eval()
    with torch.inference_mode():
        q, keys = torch.randn(3, 6), torch.randn(3, 4, 6)
        mask = torch.ones(3, 4, dtype=torch.bool)
        assert torch.allclose(eager(q, keys, mask)[0], fast(q, keys, mask)[0], atol=1e-5)
    assert compiled.compile_failed() is None
    assert list(fast.state_dict()) == list(eager.state_dict())


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(fn, **options):
        def call(*args):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "_state", {"failed": None})
    wrapped = compiled.CompiledOrEager(lambda x: x + 1, "f")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert wrapped(torch.tensor(1.0)).item() == 2.0
    assert wrapped(torch.tensor(2.0)).item() == 3.0  # eager from now on, no second warning
    assert compiled.compile_failed() == "RuntimeError: no C++ compiler"


def test_a_genuine_input_error_is_raised_and_keeps_compile_on(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)
    monkeypatch.setattr(compiled, "_state", {"failed": None})
    wrapped = compiled.CompiledOrEager(lambda x: x.reshape(3), "f")
    with pytest.raises(RuntimeError):
        wrapped(torch.zeros(2))
    assert compiled.compile_failed() is None
