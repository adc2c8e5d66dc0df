"""How freed step-sized memory stays in the process heap between training steps (glibc).

Each training step allocates and frees the same activation buffers (e.g. [N, 64] float32
for N ~ 9k packed behaviors: 2.3 MiB each; an inference slice's at batch 4096 more). glibc
serves blocks above its mmap threshold with fresh mmap calls and returns a free heap top
above its trim threshold to the kernel, so with the thresholds a fresh process starts from
(128 KiB each, raised only to the largest mmapped block freed so far) every step touched
new pages: ~1,700 minor page faults per step on ml100k (batch 256), each a kernel entry
plus zeroing 4 KiB, which made `aten::mul` on [9k, 64] take ~1 ms instead of ~0.2 ms.

Two ways to keep those pages, one for the library and one for applications:

- grow_adaptive_thresholds (what every Trainer does): one malloc and free of a 31 MiB block,
  never touched. glibc's own dynamic rule (on by default) raises the mmap threshold to the
  size of a freed mmapped block up to 32 MiB and the trim threshold to twice that, so blocks
  up to 31 MiB come from the heap and a heap top only beyond 62 MiB goes back to the OS.
  Nothing is set: the rule stays on, the state is the one glibc reaches by itself the first
  time a program frees such a block (a dataset array, a batch-4096 prediction), and the
  allocations of the rest of the process are served as glibc would serve them then.
- retain_freed_memory (`compile(..., retain_memory=True)`, and `dinrec train` / `dinrec
  demo`, applications entitled to it): mallopt fixes the mmap threshold at 64 MiB and the trim
  threshold at 1 GiB for the whole process, which also switches glibc's dynamic rule off
  for good; for steps with blocks over the 31 MiB the adaptive thresholds keep in the heap.

Until the adaptive thresholds, the Trainer called retain_freed_memory by default. Measured
with bench/throughput.py (ml100k rating, 3 epochs, 1 thread, 3 alternating pairs, medians,
samples per CPU-second; the commands are in docs/performance.md): on that tree, mallopt /
glibc's thresholds untouched: 15.8k / 13.4k training, 50.4k / 27.8k inference; that tree's
mallopt against the adaptive thresholds (now the default): 17.0k / 17.5k training, 60.0k /
63.0k inference, peak RSS 438 / 461 MiB.

Either way the retained pages are the ones the previous step already touched.

Beyond 31 MiB the adaptive thresholds keep nothing: a table of 1M rows x 16 (61 MiB) with
dense gradients allocates several buffers of its size every step (its gradient, Adam's
temporaries), each a fresh mapping faulted in page by page. `python bench/sparse_embeddings.py
--vocab 1000000` (one run each, same box): 127 ms a dense step with the adaptive thresholds,
46 ms with this module's mallopt (the tree before them), 16 ms with sparse gradients either
way. The Trainer warns about such a table (dense_table_warning) rather than setting mallopt
behind the caller's back: sparse_embeddings=True is the faster fix, retain_memory=True the
other.

On a C library without glibc's malloc (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from typing import Any

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# mallopt: blocks below this come from the heap (reused); larger ones (whole-dataset tensors,
# an epoch's score buffer) still get their own mapping and go back to the OS when freed.
MMAP_THRESHOLD = 64 << 20
# mallopt: free memory at the heap top is returned to the OS only above this much.
TRIM_THRESHOLD = 1 << 30
# The adaptive rule follows a freed mmapped chunk only up to DEFAULT_MMAP_THRESHOLD_MAX
# (32 MiB on 64-bit glibc); the chunk is the request plus a header, rounded up to a page.
ADAPTIVE_BLOCK = 31 << 20


@functools.cache
def _glibc() -> Any | None:
    """glibc's C library through ctypes, or None on another C library."""
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free.restype = None
    except (OSError, AttributeError):  # no mallopt: not glibc's malloc
        return None
    return libc


@functools.cache
def grow_adaptive_thresholds() -> bool:
    """Let glibc's dynamic thresholds learn a step's block sizes; True when it could.

    Once per process. The block is never written, so no page of it is touched: its mmap and
    munmap cost two system calls. Where the mmap threshold is already higher (an earlier
    free, or mallopt), the block comes from the heap and nothing changes.
    """
    libc = _glibc()
    if libc is None:
        return False
    block = libc.malloc(ADAPTIVE_BLOCK)
    if not block:
        return False
    libc.free(block)
    return True


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they were set.

    Process-wide and permanent (glibc's dynamic thresholds stay off afterwards): for
    applications, e.g. `dinrec train` and `dinrec demo`, or `compile(..., retain_memory=True)`.
    """
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on a rejected value.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def memory_retained() -> bool:
    """Whether retain_freed_memory has set the thresholds in this process (e.g. `dinrec
    train` did), without setting them."""
    return retain_freed_memory.cache_info().currsize > 0 and retain_freed_memory()


def dense_table_warning(tables: dict[str, int]) -> str | None:
    """The warning for dense-gradient tables (parameter name -> bytes) too big for the
    adaptive thresholds, or None when every table fits."""
    big = {name: n for name, n in tables.items() if n > ADAPTIVE_BLOCK}
    if not big:
        return None
    named = ", ".join(f"{name!r} ({n / 2**20:.0f} MiB)" for name, n in sorted(big.items()))
    return (f"embedding table(s) {named} get dense gradients: each training step allocates "
            f"buffers of that size, more than glibc keeps in the heap between steps "
            f"({ADAPTIVE_BLOCK >> 20} MiB), so every step faults them in anew (about 2.7x "
            f"slower steps at 1M rows x 16). Pass sparse_embeddings=True to the model "
            f"(faster above ~100k rows), or compile(..., retain_memory=True) to fix the "
            f"process's malloc thresholds (dinrec.training.allocator)")
