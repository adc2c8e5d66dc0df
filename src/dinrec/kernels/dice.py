"""Dice's training forward / backward through the C kernel in dice.c (autograd Function).

`dice_train(x, alpha, eps, bias, rows)` computes Dice with batch statistics of
x + bias[rows] (bias optional) and returns (out, mean, invstd) like `_DiceTrain`; gradients
flow to x, bias and alpha. Use `supports(x)` first: the kernel is CPU float32 only,
single-threaded, and not traced by torch.compile.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from dinrec.kernels.build import Signatures, can_run, load
from dinrec.kernels.build import pointer as _ptr

_P, _I = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES: Signatures = (
    ("dinrec_dice_forward", (_I, _I, _P, _P, _P, _P, ctypes.c_float, _P, _P, _P, _P),
     ctypes.c_int),
    ("dinrec_dice_backward", (_I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P),
     ctypes.c_int),
    ("dinrec_dice_moments", (_I, _I, _P, _P, _P, _P, _P, _P), ctypes.c_int),
    ("dinrec_dice_apply", (_I, _I, _P, _P, _P, _P, _P, _P, _P, _P), ctypes.c_int),
    ("dinrec_dice_grad_sums", (_I, _I, _P, _P, _P, _P, _P, _P, _P, _P), ctypes.c_int),
    ("dinrec_dice_grad_apply", (_I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P),
     ctypes.c_int),
)
_library = functools.partial(load, "dice", _SIGNATURES)


def _loaded() -> ctypes.CDLL:
    """The library inside the autograd Functions (callers checked it is available)."""
    lib = _library()
    assert lib is not None
    return lib


def supports(x: torch.Tensor) -> bool:
    """Whether dice_train can run on x [N, H] (N >= 1) in this process right now."""
    return (
        x.dtype == torch.float32
        and x.dim() == 2
        and x.shape[0] > 0
        and can_run(x)
        and _library() is not None
    )


def _check(status: int, what: str) -> None:
    if status != 0:
        raise MemoryError(f"dinrec's native Dice {what}: out of memory")


class _NativeDice(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        alpha: torch.Tensor,
        eps: float,
        bias: torch.Tensor | None,
        rows: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lib = _loaded()
        n, h = x.shape
        out, mean, invstd = torch.empty_like(x), x.new_empty(h), x.new_empty(h)
        p = torch.empty_like(x)  # kept for backward: recomputing it there is ~12% slower
        _check(lib.dinrec_dice_forward(n, h, _ptr(x), _ptr(bias), _ptr(rows), _ptr(alpha),
                                       eps, _ptr(out), _ptr(p), _ptr(mean), _ptr(invstd)),
               "forward")
        ctx.save_for_backward(x, alpha, bias, rows, p, mean, invstd)
        ctx.mark_non_differentiable(mean, invstd)
        return out, mean, invstd

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor, *_: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, torch.Tensor | None, None]:
        lib = _loaded()
        x, alpha, bias, rows, p, mean, invstd = ctx.saved_tensors
        grad = grad.contiguous()
        n, h = x.shape
        grad_x, grad_alpha = torch.empty_like(x), alpha.new_empty(h)
        grad_bias = (torch.zeros_like(bias)
                     if bias is not None and ctx.needs_input_grad[3] else None)
        _check(lib.dinrec_dice_backward(n, h, _ptr(grad), _ptr(x), _ptr(bias), _ptr(rows),
                                        _ptr(p), _ptr(alpha), _ptr(mean), _ptr(invstd),
                                        _ptr(grad_x), _ptr(grad_alpha), _ptr(grad_bias)),
               "backward")
        return grad_x, grad_alpha, None, grad_bias, None


def dice_train(
    x: torch.Tensor,
    alpha: torch.Tensor,
    eps: float,
    bias: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dice with batch statistics of v = x + bias[rows]: (f(v) [N, H], mean [H], invstd [H]).

    x [N, H] float32 (check `supports(x)`), alpha [H], bias [B, H] and rows [N] int64 in
    [0, B) together or not at all. mean / invstd are the batch statistics (no gradient).
    """
    if x.dim() != 2 or x.shape[0] == 0 or x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"native Dice takes a non-empty float32 [N, H] CPU tensor, got "
                         f"{x.dtype} {tuple(x.shape)} on {x.device}")
    n, h = x.shape
    if alpha.dtype != torch.float32:
        raise ValueError(f"Dice alpha must be float32, got {alpha.dtype}")
    if alpha.shape != (h,):
        raise ValueError(f"Dice alpha has shape {tuple(alpha.shape)}, expected ({h},)")
    if (bias is None) != (rows is None):
        raise ValueError("Dice row bias: pass bias and rows together")
    if bias is not None and rows is not None:
        if bias.dim() != 2 or bias.shape[1] != h or bias.dtype != x.dtype:
            raise ValueError(f"Dice row bias must be float32 [B, {h}], got "
                             f"{bias.dtype} {tuple(bias.shape)}")
        if rows.shape != (n,) or rows.dtype != torch.int64:
            raise ValueError(f"Dice rows must be int64 [{n}], got {rows.dtype} "
                             f"{tuple(rows.shape)}")
        low, high = torch.aminmax(rows)  # the kernel indexes bias by them: check, don't trust
        if int(low) < 0 or int(high) >= bias.shape[0]:
            raise ValueError(f"Dice rows must lie in [0, {bias.shape[0]}), got "
                             f"[{int(low)}, {int(high)}]")
        bias, rows = bias.contiguous(), rows.contiguous()
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = _NativeDice.apply(
        x.contiguous(), alpha.contiguous(), float(eps), bias, rows)
    return out


# ----- the passes apart (synchronised Dice combines statistics across ranks between them) --
# The callers (dinrec.training.distributed.sync) pass what dice_train checked: contiguous
# float32 x [N >= 1, H], alpha / mean / invstd [H], bias [B, H] with rows [N] or None.
def moments(x: torch.Tensor, bias: torch.Tensor | None, rows: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(shift [H] float32 = row 0 of v, sum (v - shift) [H], sum (v - shift)^2 [H] float64)."""
    n, h = x.shape
    shift = x.new_empty(h)
    sums = torch.zeros(2, h, dtype=torch.float64)
    _check(_loaded().dinrec_dice_moments(n, h, _ptr(x), _ptr(bias), _ptr(rows), _ptr(shift),
                                         _ptr(sums[0]), _ptr(sums[1])), "moments")
    return shift, sums[0], sums[1]


def apply(x: torch.Tensor, bias: torch.Tensor | None, rows: torch.Tensor | None,
          alpha: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(v) [N, H], p [N, H]) with the given statistics."""
    n, h = x.shape
    out, p = torch.empty_like(x), torch.empty_like(x)
    _check(_loaded().dinrec_dice_apply(n, h, _ptr(x), _ptr(bias), _ptr(rows), _ptr(alpha),
                                       _ptr(mean), _ptr(invstd), _ptr(out), _ptr(p)), "apply")
    return out, p


def grad_sums(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None,
              rows: torch.Tensor | None, p: torch.Tensor, alpha: torch.Tensor,
              mean: torch.Tensor) -> torch.Tensor:
    """[3, H] float64: sum gu, sum gu (v - mean), sum g v (1 - p) over this process's rows."""
    n, h = x.shape
    acc = torch.zeros(3, h, dtype=torch.float64)
    _check(_loaded().dinrec_dice_grad_sums(n, h, _ptr(grad), _ptr(x), _ptr(bias), _ptr(rows),
                                           _ptr(p), _ptr(alpha), _ptr(mean), _ptr(acc)),
           "gradient sums")
    return acc


def grad_apply(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None,
               rows: torch.Tensor | None, p: torch.Tensor, alpha: torch.Tensor,
               mean: torch.Tensor, invstd: torch.Tensor, mean_gu: torch.Tensor,
               slope: torch.Tensor, bias_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dL/dx [N, H], dL/dbias [B, H] or None) given the whole batch's mean_gu and slope."""
    n, h = x.shape
    grad_x = torch.empty_like(x)
    grad_bias = torch.zeros_like(bias) if bias is not None and bias_grad else None
    _check(_loaded().dinrec_dice_grad_apply(
        n, h, _ptr(grad), _ptr(x), _ptr(bias), _ptr(rows), _ptr(p), _ptr(alpha), _ptr(mean),
        _ptr(invstd), _ptr(mean_gu), _ptr(slope), _ptr(grad_x), _ptr(grad_bias)),
        "gradient")
    return grad_x, grad_bias
