"""A rank call's activation unit through the fused C kernel (dinrec.kernels.unit), when it can.

For one user and C candidates the eager unit runs each layer over all C * T (candidate,
behavior) pairs: two GEMMs, Dice's five element-wise passes twice and the output layer over
[C*T, 80] and [C*T, 40] arrays that leave L2 at 100 x 50 (~1.4 ms of a ~3 ms forward on the
2-core box). The kernel runs every pair through all layers while it is in L1, and releases
the GIL for the whole unit (ctypes), not once per op.

It takes the unit as trained: the first layer split as in BroadcastForward (per candidate
a_c = Wk'^T + diag(q_c) Wp^T and the query's share with the bias), then Linear + Dice (the
moving statistics) / PReLU / ReLU layers without BatchNorm, then the output Linear. Anything
else, training mode, autograd, tracing / export, or no C compiler: None, and the caller runs
the torch ops (same scores up to float rounding; the parity tests hold both to 1e-5).

The padded weights are prepared once per unit and reused while no parameter or buffer of
the unit has changed (torch's per-tensor version counters), so a unit trained further
between calls is re-read, never served stale.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dinrec.kernels import unit as native
from dinrec.layers.activation import Dice, MaskedActivation, PReLU
from dinrec.layers.attention import ActivationUnit

Key = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Prepared:
    """A unit's weights padded to the kernel's widths: first layer w_k, w_p [E, W_0] and
    the query's share w_query [E, W_0] with bias [W_0]; the layers; the output layer."""

    w_k: torch.Tensor
    w_p: torch.Tensor
    w_query: torch.Tensor
    bias: torch.Tensor
    layers: tuple[native.Layer, ...]
    w_out: torch.Tensor
    b_out: float


_lock = threading.Lock()
_prepared: weakref.WeakKeyDictionary[ActivationUnit, tuple[Key, _Prepared | None]] = (
    weakref.WeakKeyDictionary()
)


def _padded(width: int) -> int:
    return -(-width // native.LANES) * native.LANES


def _pad(t: torch.Tensor, *widths: int, value: float = 0.0) -> torch.Tensor:
    """t padded with `value` at the end of its last len(widths) dims to those widths."""
    pads: list[int] = []
    for dim, width in zip(reversed(range(t.dim())), reversed(widths), strict=False):
        pads += [0, width - t.shape[dim]]
    return F.pad(t, pads, value=value).contiguous()


def _activation(act: nn.Module, width: int) -> tuple[str, torch.Tensor | None] | None:
    """(kernel activation, its padded params), or None when the kernel lacks it."""
    padded = _padded(width)
    if isinstance(act, Dice):
        invstd = torch.rsqrt(act.running_var + act.eps)
        # Padded columns hold 0 and Dice(0) = 0 whatever the statistics.
        return "dice", torch.cat([_pad(act.running_mean, padded), _pad(invstd, padded, value=1.0),
                                  _pad(act.alpha, padded)])
    if isinstance(act, PReLU):
        return "prelu", _pad(act.alpha, padded)
    if isinstance(act, MaskedActivation) and isinstance(act.fn, nn.ReLU):
        return "relu", None
    return None


def _prepare(unit: ActivationUnit) -> _Prepared | None:
    if unit.first_act is None or unit.out is None:
        return None
    rest = unit.rest
    if any(not isinstance(norm, nn.Identity) for norm in rest.norms):
        return None
    width = unit.first.out_features
    first = _activation(unit.first_act, width)
    if first is None:
        return None
    w_key, w_query = unit.split_first()  # [H, 2E] acting on [k, k*q]; [H, E]
    e, padded = unit.dim, _padded(width)
    layers = [native.Layer(padded, first[0], first[1])]
    for linear, act in zip(rest.linears, rest.acts, strict=True):
        found = _activation(act, linear.out_features) if isinstance(linear, nn.Linear) else None
        if found is None or not isinstance(linear, nn.Linear):
            return None
        out = _padded(linear.out_features)
        layers.append(native.Layer(out, found[0], found[1],
                                   _pad(linear.weight.t(), layers[-1].width, out),
                                   _pad(linear.bias, out)))
    return _Prepared(
        w_k=_pad(w_key[:, :e].t(), e, padded), w_p=_pad(w_key[:, e:].t(), e, padded),
        w_query=_pad(w_query.t(), e, padded), bias=_pad(unit.first.bias, padded),
        layers=tuple(layers), w_out=_pad(unit.out.weight[0], layers[-1].width),
        b_out=float(unit.out.bias[0]),
    )


def _key(unit: ActivationUnit) -> Key | None:
    """Identity and version of every tensor of the unit; None when one has no version
    counter (made under inference_mode): then nothing is cached."""
    tensors = (*unit.parameters(), *unit.buffers())
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((id(t), t._version) for t in tensors)


def _prepared_for(unit: ActivationUnit) -> _Prepared | None:
    key = _key(unit)
    if key is None:
        with torch.no_grad():
            return _prepare(unit)
    with _lock:
        found = _prepared.get(unit)
    if found is not None and found[0] == key:
        return found[1]
    with torch.no_grad():
        prepared = _prepare(unit)
    with _lock:
        _prepared[unit] = (key, prepared)
    return prepared


def unit_scores(unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor
                ) -> torch.Tensor | None:
    """Raw scores [C, T] of one user's keys [T, E] against queries [C, E] (before masking),
    or None when the kernel cannot run them (the caller then runs the torch ops)."""
    if unit.training or torch.is_grad_enabled() or not native.available(keys, query):
        return None
    prepared = _prepared_for(unit)
    if prepared is None:
        return None
    a = torch.addcmul(prepared.w_k, query.unsqueeze(2), prepared.w_p)  # [C, E, W_0]
    qb = torch.addmm(prepared.bias, query, prepared.w_query)  # [C, W_0]
    return native.unit_scores(keys, a, qb, prepared.layers, prepared.w_out, prepared.b_out)
