"""The allocator settings: repeated step-sized allocations stop faulting in fresh pages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Rounds of step-like allocations, in a fresh process (the thresholds are process-wide, and
# the CLI tests set mallopt in this one). Sizes vary per round like a packed [N, 64]
# activation whose N (valid behaviors in the batch) changes every step; that is what makes
# glibc's starting thresholds trim and re-map the heap. The first 64 rounds visit every size
# once (7919 is odd, so i * 7919 % 64 covers 0..63): the heap grows to its working size;
# the printed number is the fewest minor page faults of the same 64 rounds, run again three
# times: a fault outside the rounds' blocks (the interpreter, torch's pools, another process
# pressing on memory) lands in one repeat, while a heap that gives pages back faults them in
# again in every repeat.
PROGRAM = """
import resource, sys
import torch
from dinrec.training import allocator

def rounds(steps):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(steps):
        n = (1 << 20) + ((i * 7919) % 64) * 4096  # ~4 MiB float32, varying
        a = torch.empty(n).fill_(1.0)
        b = a * 2.0
        c = torch.empty(n // 4).fill_(2.0)
        del a
        d = b + 1.0
        del b, c, d
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

setting = sys.argv[1]
if setting != "none":
    assert getattr(allocator, setting)() is True
    assert getattr(allocator, setting)() is True  # once per process (cached)
rounds(64)
print(min(rounds(64) for _ in range(3)))
"""


def _faults_after(setting: str) -> int:
    src = str(Path(__file__).resolve().parents[3] / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROGRAM, setting], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1])


@GLIBC
def test_adaptive_thresholds_reuse_pages_without_mallopt() -> None:
    # Fewer than one round's ~2,600 pages over all 64 rounds (measured 0, 964 or 1,192 from
    # one process to the next). Without either setting mostly ~240,000, but not always:
    # what the interpreter and torch free while importing already moves glibc's adaptive
    # thresholds, so that case is no fixed number to test.
    assert _faults_after("grow_adaptive_thresholds") < 2_600


@GLIBC
def test_retained_heap_reuses_pages() -> None:
    # 0 measured on a quiet machine; one repeat of 64 rounds saw 1,234 beside a benchmark and
    # 3,352 in a CI run (faults outside the rounds' blocks), hence the fewest of three repeats.
    # The behavior under test is that no round faults its ~2,600 pages in again, so the bound
    # is one round's pages over all 64, as for the adaptive thresholds.
    assert _faults_after("retain_freed_memory") < 2_600


def test_dense_table_warning_names_only_tables_over_the_adaptive_block() -> None:
    from dinrec.training.allocator import ADAPTIVE_BLOCK, dense_table_warning

    assert dense_table_warning({"item": ADAPTIVE_BLOCK, "user": 1 << 20}) is None
    message = dense_table_warning({"item": 64_000_000, "user": 1 << 20})
    assert message is not None
    assert "'item' (61 MiB)" in message and "'user'" not in message
    assert "sparse_embeddings=True" in message and "retain_memory=True" in message


def test_trainer_warns_for_a_big_dense_table_and_not_for_a_sparse_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import warnings

    import dinrec.training.trainer as trainer_module

    # The CLI tests may have set mallopt in this process, which silences the warning.
    monkeypatch.setattr(trainer_module, "memory_retained", lambda: False)

    from dinrec.feature_column import SparseFeat, VarLenSparseFeat
    from dinrec.models import DIN

    def columns() -> list:
        return [SparseFeat("item_id", 1_000_000, embedding_dim=16),
                VarLenSparseFeat(SparseFeat("hist_item_id", 1_000_000, embedding_dim=16,
                                            embedding_name="item_id"), maxlen=4)]

    with pytest.warns(RuntimeWarning, match=r"'item_id' \(61 MiB\)|item_id.*61 MiB"):
        DIN(columns(), ["item_id"]).compile("adam", "binary_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        DIN(columns(), ["item_id"], sparse_embeddings=True).compile(
            "adam", "binary_crossentropy")


def test_no_warning_once_the_process_retains_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import dinrec.training.trainer as trainer_module
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat
    from dinrec.models import DIN

    monkeypatch.setattr(trainer_module, "memory_retained", lambda: True)
    cols = [SparseFeat("item_id", 1_000_000, embedding_dim=16),
            VarLenSparseFeat(SparseFeat("hist_item_id", 1_000_000, embedding_dim=16,
                                        embedding_name="item_id"), maxlen=4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        DIN(cols, ["item_id"]).compile("adam", "binary_crossentropy")
