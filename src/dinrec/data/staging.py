"""A dataset directory written whole or not at all: staged beside its target, then renamed.

A failed build leaves no half-written dataset, and an overwritten one is replaced only by a
whole new one; prepare_out_dir refuses, before anything slow runs, a target holding files
that are not a dataset's (a mistyped --out is never deleted).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dinrec.data.dataset import META_FILE, SPLITS, VOCAB_FILE
from dinrec.errors import OutputExistsError

# What a dataset directory holds; overwrite=True replaces a directory holding only these, so
# a mistyped --out pointing at unrelated files is never deleted.
DATASET_FILES = frozenset({META_FILE, VOCAB_FILE, *(f"{s}.parquet" for s in SPLITS)})
T = TypeVar("T")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an out_dir that would lose data; called before anything slow happens."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a directory")
    if not out_dir.is_dir():
        return
    entries = {p.name for p in out_dir.iterdir()}
    if (out_dir / META_FILE).exists() and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds a dataset; pass {{overwrite}} "
                                "to replace it")
    foreign = sorted(entries - DATASET_FILES)
    if foreign:
        raise ValueError(f"output {out_dir} holds other files ({', '.join(foreign[:3])}); "
                         "choose a new or empty directory")
    if entries and not overwrite:
        raise OutputExistsError(f"{out_dir} holds part of a dataset; pass {{overwrite}} "
                                "to replace it")


def _fresh_sibling(out_dir: Path, tag: str) -> Path:
    """A new empty hidden directory beside out_dir (same file system, so renames are atomic).

    Made with mkdir rather than tempfile.mkdtemp, whose 0o700 mode the renamed dataset
    directory would keep; mkdir honours the umask.
    """
    while True:
        candidate = out_dir.parent / f".{out_dir.name}.{tag}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def staged(out: Path, write: Callable[[Path], T]) -> T:
    """write(staging) into a fresh directory beside out, then installed as out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _fresh_sibling(out, "building")
    try:
        result = write(staging)
        _install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _install(staging: Path, out_dir: Path) -> None:
    """Move a complete staging directory to out_dir, replacing what prepare_out_dir allowed."""
    aside: Path | None = None
    if out_dir.exists():
        aside = _fresh_sibling(out_dir, "old")
        os.replace(out_dir, aside)  # onto the empty directory just made: a plain rename
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if aside is not None:  # put the previous dataset back rather than lose it
            os.replace(aside, out_dir)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
