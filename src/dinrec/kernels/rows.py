"""Row gathers / scatters of packed behaviors through the C kernels in rows.c.

Each public function takes the torch path where the kernel cannot run (see
build.can_run; also whenever the library is unavailable), with the same results up to
float rounding:
    index_add_rows(out, ids, src)               out[ids[i]] += src[i]   (in place)
    weighted_row_sum(w, src, rows, batch)       [B, D]: sum over i of w[i] * src[i] per row
    key_query(keys, query, rows)                [N, 2E]: [keys, keys * query[rows]]
The last two are differentiable (autograd Functions with hand-written backward kernels).
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
    ("dinrec_index_add_rows", (_I, _I, _P, _P, _P), None),
    ("dinrec_weighted_row_sum", (_I, _I, _P, _P, _P, _P), None),
    ("dinrec_weighted_row_sum_backward", (_I, _I, _P, _P, _P, _P, _P, _P), None),
    ("dinrec_key_query", (_I, _I, _P, _P, _P, _P), None),
    ("dinrec_key_query_backward", (_I, _I, _P, _P, _P, _P, _P, _P), None),
)
_library = functools.partial(load, "rows", _SIGNATURES)


def _loaded() -> ctypes.CDLL:
    """The library inside the autograd Functions (callers checked it is available)."""
    lib = _library()
    assert lib is not None
    return lib


def _native(index: torch.Tensor, *values: torch.Tensor) -> ctypes.CDLL | None:
    """The library when the tensors suit it: int64 index and float32 values, contiguous,
    on the CPU (see build.can_run)."""
    ok = (index.dtype == torch.int64 and all(v.dtype == torch.float32 for v in values)
          and all(t.is_contiguous() for t in (index, *values)) and can_run(index, *values))
    return _library() if ok else None


def index_add_rows(out: torch.Tensor, ids: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """out [V, D] += src [K, D] rows at ids [K] (int64 in [0, V)). Returns out."""
    lib = _native(ids, out, src)
    shapes_ok = (out.dim() == src.dim() == 2 and out.shape[1] == src.shape[1]
                 and ids.shape == (src.shape[0],))
    if lib is None or not shapes_ok:
        return out.index_add_(0, ids, src)  # torch also reports what is wrong with the shapes
    _check_rows(ids, out.shape[0])
    lib.dinrec_index_add_rows(ids.shape[0], src.shape[1], _ptr(ids), _ptr(src), _ptr(out))
    return out


class _WeightedRowSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, src: torch.Tensor, rows: torch.Tensor,
                batch: int) -> torch.Tensor:
        lib = _loaded()
        out = src.new_zeros(batch, src.shape[1])
        lib.dinrec_weighted_row_sum(src.shape[0], src.shape[1], _ptr(rows), _ptr(w),
                                    _ptr(src), _ptr(out))
        ctx.save_for_backward(w, src, rows)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lib = _loaded()
        w, src, rows = ctx.saved_tensors
        grad = grad.contiguous()
        grad_w = torch.empty_like(w) if ctx.needs_input_grad[0] else None
        grad_src = torch.empty_like(src) if ctx.needs_input_grad[1] else None
        lib.dinrec_weighted_row_sum_backward(src.shape[0], src.shape[1], _ptr(rows), _ptr(w),
                                             _ptr(src), _ptr(grad), _ptr(grad_w),
                                             _ptr(grad_src))
        return grad_w, grad_src, None, None


def weighted_row_sum(
    w: torch.Tensor, src: torch.Tensor, rows: torch.Tensor, batch: int, native: bool = True
) -> torch.Tensor:
    """w [N], src [N, D], rows [N] (sorted or not, in [0, batch)) -> [batch, D] with
    out[b] = sum over rows[i] == b of w[i] * src[i]. native=False: torch ops only."""
    shapes_ok = src.dim() == 2 and w.shape == rows.shape == (src.shape[0],)
    if not native or not shapes_ok or _native(rows, w, src) is None:
        # torch also names what is wrong with mismatched shapes
        return src.new_zeros(batch, src.shape[1]).index_add(0, rows, w.unsqueeze(-1) * src)
    _check_rows(rows, batch)
    out: torch.Tensor = _WeightedRowSum.apply(w, src, rows, batch)
    return out


class _KeyQuery(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, keys: torch.Tensor, query: torch.Tensor,
                rows: torch.Tensor) -> torch.Tensor:
        lib = _loaded()
        n, e = keys.shape
        out = keys.new_empty(n, 2 * e)
        lib.dinrec_key_query(n, e, _ptr(rows), _ptr(keys), _ptr(query), _ptr(out))
        ctx.save_for_backward(keys, query, rows)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lib = _loaded()
        keys, query, rows = ctx.saved_tensors
        grad = grad.contiguous()
        grad_keys = torch.empty_like(keys) if ctx.needs_input_grad[0] else None
        grad_query = torch.zeros_like(query) if ctx.needs_input_grad[1] else None
        lib.dinrec_key_query_backward(keys.shape[0], keys.shape[1], _ptr(rows), _ptr(keys),
                                      _ptr(query), _ptr(grad), _ptr(grad_keys),
                                      _ptr(grad_query))
        return grad_keys, grad_query, None


def key_query(
    keys: torch.Tensor, query: torch.Tensor, rows: torch.Tensor, native: bool = True
) -> torch.Tensor:
    """[keys, keys * query[rows]]: keys [N, E], query [B, E], rows [N] -> [N, 2E].
    native=False: torch ops only."""
    shapes_ok = (keys.dim() == query.dim() == 2 and keys.shape[1] == query.shape[1]
                 and rows.shape == (keys.shape[0],))
    if not native or not shapes_ok or _native(rows, keys, query) is None:
        # torch also names what is wrong with mismatched shapes
        return torch.cat([keys, keys * query.index_select(0, rows)], dim=-1)
    _check_rows(rows, query.shape[0])
    out: torch.Tensor = _KeyQuery.apply(keys, query, rows)
    return out


def _check_rows(rows: torch.Tensor, batch: int) -> None:
    """The kernels index by rows: out-of-range values would write outside the output."""
    if rows.numel() == 0:
        return
    low, high = torch.aminmax(rows)
    if int(low) < 0 or int(high) >= batch:
        raise IndexError(f"packed rows must lie in [0, {batch}), got [{int(low)}, {int(high)}]")
