"""The activation unit's eval-mode scores through the C kernel in unit.c (no autograd).

`PaddedUnit(...).scores(keys, queries)` runs the whole activation-unit MLP for one user's T
behaviors against C candidates, four behaviors at a time through every layer, so the
[C*T, H] activations never leave L1 (see unit.c). Widths must be padded to a multiple of
LANES with zero weights (dinrec.serving.unit_kernel does it); the weights are checked and
their pointers laid out once, so a call costs one ctypes call. `available(...)` first: the
kernel is CPU float32, not traced by torch.compile or export, and the library may be
unavailable (no C compiler); callers then use torch ops. It runs on the calling thread, and
on `threads - 1` more that it starts for the call when asked (they share the candidates).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dinrec.kernels.build import Signatures, can_run, load

LANES = 16  # unit.c's vector width: every layer width is padded to a multiple of it
ACTIVATIONS = {"none": 0, "dice": 1, "prelu": 2, "relu": 3}

_P, _I = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES: Signatures = (
    ("dinrec_unit_scores",
     (_I, _I, _I, _P, _P, _P, _P, _P, _P, _I, _P, _P, _P, _P, _P, _P, ctypes.c_float, _P, _I),
     ctypes.c_int),
)
_library = functools.partial(load, "unit", _SIGNATURES)


@dataclass(frozen=True)
class Layer:
    """One hidden layer, padded: weight [in, out] (transposed Linear; None for the first
    layer, whose weights are the per-candidate `a`), bias [out] (None likewise), the
    activation's name and params (Dice: [3 * out] mean, invstd, alpha; PReLU: alpha [out])."""

    width: int
    activation: str
    params: torch.Tensor | None
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def available(*tensors: torch.Tensor) -> bool:
    """Whether unit_scores can run on these tensors in this process right now."""
    return all(t.dtype == torch.float32 for t in tensors) and can_run(*tensors) and (
        _library() is not None
    )


def _pointers(tensors: Sequence[torch.Tensor | None]) -> ctypes.Array[ctypes.c_void_p]:
    return (ctypes.c_void_p * max(len(tensors), 1))(
        *[None if t is None else t.data_ptr() for t in tensors]
    )


class PaddedUnit:
    """An activation unit's weights, padded and laid out for the kernel.

    Args:
        w_k, w_p, w_query: the first layer split as in serving/broadcast.py, each
            [E, W_0]: a_c = w_k + diag(q_c) w_p, and the query's share q_c @ w_query.
        bias: the first layer's bias [W_0].
        layers: every hidden layer, the first one's weight and bias None.
        w_out, b_out: the output Linear, [W_last] and a number.
    """

    def __init__(self, w_k: torch.Tensor, w_p: torch.Tensor, w_query: torch.Tensor,
                 bias: torch.Tensor, layers: Sequence[Layer], w_out: torch.Tensor,
                 b_out: float) -> None:
        widths = [layer.width for layer in layers]
        if not layers or any(w % LANES for w in widths):
            raise ValueError(f"unit widths must be a non-empty list of multiples of {LANES}, "
                             f"got {widths}")
        e = w_k.shape[0]
        for name, t in (("w_k", w_k), ("w_p", w_p), ("w_query", w_query)):
            if t.shape != (e, widths[0]):
                raise ValueError(f"{name} must be [{e}, {widths[0]}], got {tuple(t.shape)}")
        if bias.shape != (widths[0],) or w_out.shape != (widths[-1],):
            raise ValueError(f"bias must be [{widths[0]}] and w_out [{widths[-1]}], got "
                             f"{tuple(bias.shape)} and {tuple(w_out.shape)}")
        for n, layer in enumerate(layers[1:], 1):
            shape = (widths[n - 1], widths[n])
            if layer.weight is None or layer.weight.shape != shape:
                raise ValueError(f"layer {n}: weight must be {list(shape)}")
            if layer.bias is None or layer.bias.shape != (widths[n],):
                raise ValueError(f"layer {n}: bias must be [{widths[n]}]")
        self.dim = e
        # Contiguous float32 copies, kept here: the kernel reads them through raw pointers.
        self.first = [t.detach().float().contiguous() for t in (w_k, w_p, w_query, bias)]
        self.w_out = w_out.detach().float().contiguous()
        self.b_out = float(b_out)
        self.tensors = [
            [None if t is None else t.detach().float().contiguous() for t in
             (layer.weight, layer.bias, layer.params)] for layer in layers
        ]
        self.layers = len(layers)
        self._widths = (ctypes.c_int64 * len(widths))(*widths)
        self._acts = (ctypes.c_int64 * len(layers))(
            *[ACTIVATIONS[layer.activation] for layer in layers])
        self._weights = _pointers([row[0] for row in self.tensors[1:]])
        self._biases = _pointers([row[1] for row in self.tensors[1:]])
        self._params = _pointers([row[2] for row in self.tensors])

    def scores(self, keys: torch.Tensor, queries: torch.Tensor, threads: int = 1) -> torch.Tensor:
        """Raw scores [C, T] of keys [T, E] against queries [C, E] (float32, CPU), on up to
        `threads` threads (the same numbers whatever the count)."""
        if keys.dim() != 2 or queries.dim() != 2 or keys.shape[1] != self.dim or (
            queries.shape[1] != self.dim
        ):
            raise ValueError(f"keys [T, {self.dim}] and queries [C, {self.dim}] expected, got "
                             f"{tuple(keys.shape)} and {tuple(queries.shape)}")
        lib = _library()
        assert lib is not None, "check available() first"
        keys, queries = keys.contiguous(), queries.contiguous()
        (t, e), c = keys.shape, queries.shape[0]
        out = torch.empty(c, t, dtype=torch.float32)
        w_k, w_p, w_query, bias = (x.data_ptr() for x in self.first)
        status = lib.dinrec_unit_scores(
            c, t, e, keys.data_ptr(), queries.data_ptr(), w_k, w_p, w_query, bias,
            self.layers, self._widths, self._weights, self._biases, self._acts, self._params,
            self.w_out.data_ptr(), self.b_out, out.data_ptr(), max(1, threads),
        )
        if status != 0:
            raise MemoryError("dinrec's native activation unit: out of memory")
        return out
