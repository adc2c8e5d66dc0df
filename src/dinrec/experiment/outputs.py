"""Replacing what an earlier run or demo wrote, and nothing else.

`overwrite=True` (`--overwrite`) must not turn a mistyped output directory into a deleted
home directory: only the entries a run or a demo writes are removed, by name; anything else
in the directory stays.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

# What run_experiment writes into a run directory (runner.py's layout) and its temporaries.
RUN_ENTRIES = ("config.toml", "data", "train.log", "metrics.jsonl", "checkpoint.pt",
               "checkpoint.dcp", "model", "results.json", "curves.png")


def remove_entries(root: Path, names: Iterable[str]) -> list[Path]:
    """Delete root/NAME for each name that exists (file or directory) and hidden temporaries
    of them (".NAME.*"); returns what was removed."""
    removed = []
    for name in names:
        for path in [root / name, *root.glob(f".{name}.*")]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(path)
    return removed
