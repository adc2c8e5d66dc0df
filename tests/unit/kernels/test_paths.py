"""The native kernels and the torch ops compute the same attention pooling, end to end."""

from __future__ import annotations

import pytest
import torch

from dinrec.kernels import build
from dinrec.layers.attention import AttentionPooling

pytestmark = pytest.mark.skipif(build.load("dice") is None or build.load("rows") is None,
                                reason="no C compiler: native kernels unavailable")


def pooling_step(torch_ops: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Outputs, input gradients, parameter gradients and Dice's moving statistics of one
    training forward/backward of a Dice attention pooling."""
    with monkeypatch.context() as patch:
        if torch_ops:
            patch.setattr(build, "MAX_THREADS", 0)  # no kernel may run: torch ops only
        torch.manual_seed(0)
        pool = AttentionPooling(8, hidden_units=(16, 4), activation="dice").train()
        with torch.no_grad():
            for name, param in pool.named_parameters():
                if name.endswith("alpha"):
                    param.uniform_(-0.5, 0.5)
        query = torch.randn(5, 8, requires_grad=True)
        keys = torch.randn(5, 7, 8, requires_grad=True)
        mask = torch.arange(7).unsqueeze(0) < torch.tensor([[7], [3], [1], [5], [6]])
        interest, weights = pool(query, keys, mask)
        (interest * torch.linspace(-1, 1, 40).reshape(5, 8)).sum().backward()
        out = {"interest": interest.detach(), "weights": weights.detach(),
               "d_query": query.grad, "d_keys": keys.grad}
        out.update({f"d_{n}": p.grad for n, p in pool.named_parameters()})
        out.update({n: b.clone() for n, b in pool.named_buffers()})
        return out


def test_native_and_torch_paths_give_the_same_pooling_and_gradients(monkeypatch):
    native, reference = pooling_step(False, monkeypatch), pooling_step(True, monkeypatch)
    assert native.keys() == reference.keys()
    for name in native:
        assert torch.allclose(native[name], reference[name], atol=1e-5, rtol=1e-4), name
    # padded slots: no weight and no gradient on either path
    assert native["weights"][2, 1:].abs().sum() == 0
    assert native["d_keys"][2, 1:].abs().sum() == 0


def test_the_native_path_really_runs_the_kernels(monkeypatch):
    from dinrec.kernels import dice, rows

    calls: list[str] = []
    for module, name in ((dice, "_NativeDice"), (rows, "_KeyQuery"), (rows, "_WeightedRowSum")):
        original = getattr(module, name).apply
        monkeypatch.setattr(getattr(module, name), "apply",
                            lambda *a, _n=name, _f=original: (calls.append(_n), _f(*a))[1])
    pooling_step(False, monkeypatch)
    assert sorted(set(calls)) == ["_KeyQuery", "_NativeDice", "_WeightedRowSum"]
    assert calls.count("_NativeDice") == 2  # both hidden layers' Dice
