"""Benchmark: dinrec's native C kernels vs the torch ops they replace, forward + backward.

Shapes of DIN's activation unit on ml100k (batch 256, ~36 valid behaviors of 50: N ~ 9.2k
packed rows, H = 64 / 16 hidden units, E = 32 key width), 1 thread, median of --repeat
timings each, both implementations side by side in one process. Not part of the tests.

Run:
    python bench/native_kernels.py [--rows 9216] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dinrec.kernels import dice as native_dice
from dinrec.kernels import rows as native_rows
from dinrec.layers.activation import _DiceTrain
from dinrec.training.allocator import retain_freed_memory


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def fwd_bwd(fn: Callable[[], torch.Tensor], grad: torch.Tensor,
            inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    """fn's forward plus the gradients of `inputs` (torch.autograd.grad: no accumulation
    into .grad, which would add a pass to both sides)."""
    return lambda: torch.autograd.grad(fn(), inputs, grad)


def cases(n: int, batch: int) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (torch version, native version), each a forward + backward."""
    torch.manual_seed(0)
    rows = torch.sort(torch.randint(0, batch, (n,))).values
    x64, x16 = torch.randn(n, 64, requires_grad=True), torch.randn(n, 16, requires_grad=True)
    bias = torch.randn(batch, 64, requires_grad=True)
    a64, a16 = torch.rand(64, requires_grad=True), torch.rand(16, requires_grad=True)
    keys, query = torch.randn(n, 32, requires_grad=True), torch.randn(batch, 32, requires_grad=True)
    w = torch.randn(n, requires_grad=True)
    g64, g16, g_kq = torch.randn(n, 64), torch.randn(n, 16), torch.randn(n, 64)
    g_sum, g_emb = torch.randn(batch, 32), torch.randn(n, 16)
    ids = torch.randint(0, 1615, (n,))
    dice64, dice16, kq, pool = (x64, bias, a64), (x16, a16), (keys, query), (w, keys)
    return {
        "Dice [N, 64] + query part per row": (
            fwd_bwd(lambda: _DiceTrain.apply(x64 + bias.index_select(0, rows), a64, 1e-8)[0],
                    g64, dice64),
            fwd_bwd(lambda: native_dice.dice_train(x64, a64, 1e-8, bias, rows)[0],
                    g64, dice64),
        ),
        "Dice [N, 16]": (
            fwd_bwd(lambda: _DiceTrain.apply(x16, a16, 1e-8)[0], g16, dice16),
            fwd_bwd(lambda: native_dice.dice_train(x16, a16, 1e-8)[0], g16, dice16),
        ),
        "[k, k*q] [N, 64]": (
            fwd_bwd(lambda: native_rows.key_query(keys, query, rows, native=False), g_kq, kq),
            fwd_bwd(lambda: native_rows.key_query(keys, query, rows), g_kq, kq),
        ),
        "interest = sum w*k [B, 32]": (
            fwd_bwd(lambda: native_rows.weighted_row_sum(w, keys, rows, batch, native=False),
                    g_sum, pool),
            fwd_bwd(lambda: native_rows.weighted_row_sum(w, keys, rows, batch), g_sum, pool),
        ),
        "embedding backward [1615, 16]": (
            lambda: torch.zeros(1615, 16).index_add_(0, ids, g_emb),
            lambda: native_rows.index_add_rows(torch.zeros(1615, 16), ids, g_emb),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=9216, help="packed behaviors N")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    retain_freed_memory()  # as the Trainer does: no page faults on re-allocation
    if not native_dice.supports(torch.zeros(1, 1)):
        raise SystemExit("native kernels unavailable (no C compiler?), nothing to compare")
    print(f"N = {args.rows}, B = {args.batch}, 1 thread, median of {args.repeat}, fwd + bwd")
    print(f"{'op':36s} {'torch ms':>9s} {'native ms':>10s} {'speed-up':>9s}")
    for name, (torch_fn, native_fn) in cases(args.rows, args.batch).items():
        t, n = median_ms(torch_fn, args.repeat), median_ms(native_fn, args.repeat)
        print(f"{name:36s} {t:9.3f} {n:10.3f} {t / n:8.1f}x", flush=True)


if __name__ == "__main__":
    main()
