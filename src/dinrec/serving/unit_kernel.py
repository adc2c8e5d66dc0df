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

A call may use more cores than its own (unit.c shares the candidates between threads): as
many as `budget` has free, one per PAIRS_PER_THREAD (candidate, behavior) pairs. A lone rank
request with 1,000 behaviors x 100 candidates (~17 ms on one core of the 2-core box) then
takes both cores, while under load, with every inference thread in a call, each call keeps
to its own thread and nothing is oversubscribed.

The padded weights are prepared once per unit and reused while no parameter or buffer of
the unit has changed (torch's per-tensor version counters), so a unit trained further
between calls is re-read, never served stale.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from dinrec.kernels import unit as native
from dinrec.layers.activation import Dice, MaskedActivation, PReLU
from dinrec.layers.attention import ActivationUnit

Key = tuple[tuple[torch.Tensor, int], ...]


# ~1.4 ms of the kernel's work at widths 80-40 per thread. A smaller share would pay on an
# idle machine (50 behaviors x 100 candidates: 0.92 -> 0.53 ms on 2 threads) but not under
# load: at concurrency 8 such calls took 2 threads whenever the other inference thread was
# between calls, and the server's CPU per request rose 13% (bench/serve_latency.py).
PAIRS_PER_THREAD = 8192


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class CoreBudget:
    """How many threads the kernel's calls in this process may run at once, all calls
    together: each call takes what is free for its size, and always at least its own thread.

    Args:
        limit: the most threads at once (>= 1).
    """

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self.limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the unit kernel's thread limit must be >= 1, got {limit}")
        self._limit = limit

    @contextlib.contextmanager
    def take(self, wanted: int) -> Iterator[int]:
        """Threads for a call that could use `wanted`, held until the block ends."""
        with self._lock:
            n = max(1, min(wanted, self._limit - self._busy))
            self._busy += n
        try:
            yield n
        finally:
            with self._lock:
                self._busy -= n


budget = CoreBudget(available_cpus())

_lock = threading.Lock()
_prepared: weakref.WeakKeyDictionary[ActivationUnit, tuple[Key, native.PaddedUnit | None]] = (
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


def _prepare(unit: ActivationUnit) -> native.PaddedUnit | None:
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
    return native.PaddedUnit(
        _pad(w_key[:, :e].t(), e, padded), _pad(w_key[:, e:].t(), e, padded),
        _pad(w_query.t(), e, padded), _pad(unit.first.bias, padded), layers,
        _pad(unit.out.weight[0], layers[-1].width), float(unit.out.bias[0]),
    )


def _tensors(unit: ActivationUnit) -> list[torch.Tensor]:
    """The tensors _prepare reads, by attribute (walking unit.parameters() costs ~0.1 ms)."""
    modules: list[nn.Module | None] = [unit.first, unit.first_act, unit.out]
    modules += [*unit.rest.linears, *unit.rest.acts, *unit.rest.norms]
    return [t for m in modules if m is not None
            for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]


def _key(unit: ActivationUnit) -> Key | None:
    """Every tensor _prepare reads with its version; None when one has no version counter
    (made under inference_mode): then nothing is cached. The key holds the tensors
    themselves, so a replaced one never matches (an id could be reused)."""
    tensors = _tensors(unit)
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t, t._version) for t in tensors)


def _same(a: Key, b: Key) -> bool:
    return len(a) == len(b) and all(
        x is y and vx == vy for (x, vx), (y, vy) in zip(a, b, strict=True)
    )


def _prepared_for(unit: ActivationUnit) -> native.PaddedUnit | None:
    key = _key(unit)
    if key is None:
        with torch.no_grad():
            return _prepare(unit)
    with _lock:
        found = _prepared.get(unit)
    if found is not None and _same(found[0], key):
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
    with budget.take(keys.shape[0] * query.shape[0] // PAIRS_PER_THREAD) as threads:
        return prepared.scores(keys, query, threads)
