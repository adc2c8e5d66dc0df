"""The activation unit's eval-mode scores through the C kernel in unit.c (no autograd).

`unit_scores(keys, a, qb, layers, w_out, b_out)` runs the whole activation-unit MLP for one
user's T behaviors against C candidates, four behaviors at a time through every layer, so
the [C*T, H] activations never leave L1 (see unit.c). Widths must be padded to a multiple of
LANES with zero weights (dinrec.serving.unit_kernel does it). `available(...)` first: the
kernel is CPU float32, single-threaded, not traced by torch.compile or export, and the
library may be unavailable (no C compiler); callers then use torch ops.
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
     (_I, _I, _I, _P, _P, _P, _I, _P, _P, _P, _P, _P, _P, ctypes.c_float, _P), ctypes.c_int),
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


def unit_scores(
    keys: torch.Tensor, a: torch.Tensor, qb: torch.Tensor, layers: Sequence[Layer],
    w_out: torch.Tensor, b_out: float,
) -> torch.Tensor:
    """Raw scores [C, T] of keys [T, E] against candidates given as a [C, E, W_0] (the first
    layer's per-candidate weights) and qb [C, W_0] (its per-candidate bias), then `layers`
    (the first one's weight and bias None), then the output layer w_out [W_last], b_out."""
    t, e = keys.shape
    c = a.shape[0]
    widths = [layer.width for layer in layers]
    if not layers or any(w % LANES for w in widths):
        raise ValueError(f"unit widths must be a non-empty list of multiples of {LANES}, "
                         f"got {widths}")
    if a.shape != (c, e, widths[0]) or qb.shape != (c, widths[0]):
        raise ValueError(f"first layer: a must be [{c}, {e}, {widths[0]}] and qb "
                         f"[{c}, {widths[0]}], got {tuple(a.shape)} and {tuple(qb.shape)}")
    if w_out.shape != (widths[-1],):
        raise ValueError(f"w_out must be [{widths[-1]}], got {tuple(w_out.shape)}")
    for n, layer in enumerate(layers[1:], 1):
        shape = (widths[n - 1], widths[n])
        if layer.weight is None or layer.weight.shape != shape:
            raise ValueError(f"layer {n}: weight must be {list(shape)}")
        if layer.bias is None or layer.bias.shape != (widths[n],):
            raise ValueError(f"layer {n}: bias must be [{widths[n]}]")
    lib = _library()
    assert lib is not None, "check available() first"
    keys, a, qb, w_out = (x.contiguous() for x in (keys, a, qb, w_out))
    weights = [layer.weight.contiguous() for layer in layers[1:] if layer.weight is not None]
    biases = [layer.bias.contiguous() for layer in layers[1:] if layer.bias is not None]
    params = [None if layer.params is None else layer.params.contiguous() for layer in layers]
    out = torch.empty(c, t, dtype=torch.float32)
    status = lib.dinrec_unit_scores(
        c, t, e, keys.data_ptr(), a.data_ptr(), qb.data_ptr(), len(layers),
        (ctypes.c_int64 * len(widths))(*widths), _pointers(weights), _pointers(biases),
        (ctypes.c_int64 * len(layers))(*[ACTIVATIONS[layer.activation] for layer in layers]),
        _pointers(params), w_out.data_ptr(), float(b_out), out.data_ptr(),
    )
    if status != 0:
        raise MemoryError("dinrec's native activation unit: out of memory")
    return out
