"""Compile dinrec's C kernels once per machine and load them with ctypes.

The kernels are plain C (no torch headers): a build takes under a second with the system C
compiler, and the library is cached under the user's cache directory, keyed by the source,
the compiler, the flags and the CPU (-march=native code must not run on another CPU).
Without a compiler, or when the build fails, `load` returns None and callers use their
torch implementation (same results up to float rounding); one warning says why.

Environment:
    DINREC_NATIVE_KERNELS=0   never build or load (torch implementations only)
    DINREC_KERNEL_CACHE=DIR   where built libraries go (default: $XDG_CACHE_HOME/dinrec/
                              kernels, else ~/.cache/dinrec/kernels, else a temp dir)
    CC                        the C compiler (default: cc, gcc or clang on PATH)
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).resolve().parent
ENV_SWITCH = "DINREC_NATIVE_KERNELS"
ENV_CACHE = "DINREC_KERNEL_CACHE"

# -ffast-math only when compiling: it lets the vectoriser call glibc's vector expf (libmvec)
# and reassociate the column sums. Linking with it would add crtfastmath.o, which turns on
# flush-to-zero for the whole process when the library loads. Later entries are fallbacks
# for C libraries without libmvec and compilers without -march=native.
COMPILE_FLAGS = ("-O3", "-ffast-math", "-fPIC", "-std=c11", "-pthread")
ATTEMPTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("-march=native",), ("-lmvec", "-lm", "-pthread")),
    (("-march=native",), ("-lm", "-pthread")),
    ((), ("-lm", "-pthread")),
)

# The kernels run on one thread (unit.c on as many as its caller asks for). Torch's ops run
# on all intra-op threads but make several times the passes over memory; up to this many
# threads the kernels are still faster.
MAX_THREADS = 4

_lock = threading.Lock()


def pointer(tensor: torch.Tensor | None) -> ctypes.c_void_p | None:
    """A tensor's data address for a kernel argument (None -> NULL)."""
    return None if tensor is None else ctypes.c_void_p(tensor.data_ptr())


def can_run(*tensors: torch.Tensor) -> bool:
    """Whether a kernel may take these tensors now: CPU float32 / int64 data, few threads,
    not inside torch.compile / export tracing (which cannot see through ctypes)."""
    return (
        all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.int64) for t in tensors)
        and torch.get_num_threads() <= MAX_THREADS
        and not torch.compiler.is_compiling()
        and not getattr(torch.compiler, "is_exporting", lambda: False)()  # torch >= 2.5
        and not torch.jit.is_tracing()
    )


def enabled() -> bool:
    """False when DINREC_NATIVE_KERNELS=0 (or 'false' / 'off' / 'no')."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "off", "no"}


def cache_dir() -> Path:
    """Where built libraries are kept (see the module docstring)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dinrec" / "kernels"


def find_compiler() -> str | None:
    """$CC, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU model and its feature flags (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines()
            if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


def _build_key(name: str, source: bytes, compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    digest = hashlib.sha256()
    for part in (source, version.encode(), repr((COMPILE_FLAGS, ATTEMPTS)).encode(),
                 _cpu_signature().encode(), platform.machine().encode()):
        digest.update(part)
        digest.update(b"\0")
    return f"{name}-{digest.hexdigest()[:20]}"


def _compile(compiler: str, source: Path, target: Path) -> str | None:
    """Build `target` from `source`; None on success, else the last attempt's error text."""
    error = ""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, lib = Path(tmp) / "kernel.o", Path(tmp) / target.name
        for arch, libs in ATTEMPTS:
            steps = (
                [compiler, *COMPILE_FLAGS, *arch, "-c", str(source), "-o", str(obj)],
                [compiler, "-shared", str(obj), "-o", str(lib), *libs],
            )
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=300)
                if done.returncode != 0:
                    error = f"{' '.join(step)}: {done.stderr.strip()[-800:]}"
                    break
            else:
                os.replace(lib, target)  # atomic: concurrent builders each install a whole file
                return None
    return error


# (function name, argument types, return type) of a library's exported kernels.
Signatures = tuple[tuple[str, tuple[type, ...], type | None], ...]


@functools.cache
def load(name: str, signatures: Signatures = ()) -> ctypes.CDLL | None:
    """The kernel library built from `<name>.c` in this package, its functions typed by
    `signatures`, or None (see above)."""
    if not enabled():
        return None
    with _lock:
        lib = _load_locked(name)
    if lib is not None:
        for function, argtypes, restype in signatures:
            getattr(lib, function).argtypes = list(argtypes)
            getattr(lib, function).restype = restype
    return lib


def _load_locked(name: str) -> ctypes.CDLL | None:
    source = SOURCE_DIR / f"{name}.c"
    compiler = find_compiler()
    if compiler is None:
        _fallback(name, "no C compiler found (set CC, or install gcc or clang)")
        return None
    try:
        key = _build_key(name, source.read_bytes(), compiler)
        target = _writable_dir() / f"{key}.so"
        if not target.exists():
            error = _compile(compiler, source, target)
            if error is not None:
                _fallback(name, f"building it failed: {error}")
                return None
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        _fallback(name, f"{type(exc).__name__}: {exc}")
        return None


def _writable_dir() -> Path:
    """cache_dir(), or a per-user temp directory when that cannot be created or written."""
    for directory in (cache_dir(), Path(tempfile.gettempdir()) / f"dinrec-kernels-{os.getuid()}"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    raise OSError(f"neither {cache_dir()} nor the temp directory is writable "
                  f"(set {ENV_CACHE})")


def _fallback(name: str, why: str) -> None:
    warnings.warn(
        f"dinrec: the native {name} kernel is not available, using torch ops instead "
        f"(same results, slower training): {why}. Set {ENV_SWITCH}=0 to skip this.",
        RuntimeWarning,
        stacklevel=4,
    )
