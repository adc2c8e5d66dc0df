from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from dinrec.kernels import build

pytestmark = pytest.mark.skipif(build.find_compiler() is None, reason="no C compiler on PATH")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_loading_a_kernel_keeps_denormals():
    # Linking with -ffast-math would set flush-to-zero for the whole process on load.
    assert build.load("dice") is not None
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 0.5).item() != 0.0
    assert (torch.ones(64) * 1e-39).sum().item() > 0.0


def test_switched_off_by_the_environment():
    done = run_python("""
        from dinrec.kernels import build, dice
        import torch
        print(build.load("dice"), dice.supports(torch.zeros(2, 2)))
    """, DINREC_NATIVE_KERNELS="0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False"]


def test_a_failing_compiler_warns_and_training_falls_back_to_torch(tmp_path):
    done = run_python("""
        import warnings, torch
        from dinrec.layers.activation import Dice
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d = Dice(3)
            x = torch.randn(8, 3, requires_grad=True)
            d(x).sum().backward()
        print(x.grad.shape[0], "|", [str(w.message) for w in caught])
    """, CC="false", DINREC_KERNEL_CACHE=str(tmp_path))
    assert done.returncode == 0, done.stderr
    count, messages = done.stdout.split("|", 1)
    assert count.strip() == "8"
    assert "native dice kernel is not available" in messages and "failed" in messages


def test_built_once_per_cache_key_and_reused(tmp_path):
    code = """
        from dinrec.kernels import build
        assert build.load("rows") is not None
        print(sorted(p.name for p in build.cache_dir().iterdir()))
    """
    first = run_python(code, DINREC_KERNEL_CACHE=str(tmp_path))
    assert first.returncode == 0, first.stderr
    built = list(tmp_path.glob("rows-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    second = run_python(code, DINREC_KERNEL_CACHE=str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and built[0].stat().st_mtime_ns == stamp


def test_an_unusable_cache_directory_falls_back_to_a_temp_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run_python("""
        import warnings
        warnings.simplefilter("error")  # the fallback directory is no reason to warn
        from dinrec.kernels import build
        lib = build.load("rows")
        print(lib is not None, build._writable_dir().name.startswith("dinrec-kernels-"))
    """, DINREC_KERNEL_CACHE=str(blocker / "cache"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
