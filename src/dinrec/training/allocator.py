"""Keep freed memory in the process heap between training steps (glibc only).

Each training step allocates and frees the same activation buffers (e.g. [N, 64] float32
for N ~ 9k packed behaviors: 2.3 MiB each). glibc serves blocks above its mmap threshold
with fresh mmap calls and returns freed heap tops to the kernel, so every step touched new
pages: ~1,700 minor page faults per step on ml100k (batch 256), each a kernel entry plus
zeroing 4 KiB, which made `aten::mul` on [9k, 64] take ~1 ms instead of ~0.2 ms. With a
fixed mmap threshold and a high trim threshold the allocator reuses the same pages, the
faults drop to ~0 per step, and training runs 15-20% more samples per CPU-second
(docs/performance.md). Peak RSS is unchanged: the retained pages are the ones the previous
step already touched.

Why the Trainer does it by default (retain_memory=True): every step frees and re-allocates
the same activations, so the cost of glibc's defaults falls on every training run. Measured
again with bench/throughput.py (ml100k rating, 3 epochs, 1 thread; 3 runs each, alternating
on and off with `--compile-options '{"retain_memory": false}'`, on a shared 2-core box under
load, so +-15%), medians on / off: 18.9k / 15.4k training and 57k / 39k inference samples
per CPU-second, peak RSS 448 / 467 MiB.

Process-wide and idempotent; on a C library without mallopt (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks below this come from the heap (reused); larger ones (whole-dataset tensors, an
# epoch's score buffer) still get their own mapping and go back to the OS when freed.
MMAP_THRESHOLD = 64 << 20
# Free memory at the heap top is returned to the OS only above this much.
TRIM_THRESHOLD = 1 << 30


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they were set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on a rejected value.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
