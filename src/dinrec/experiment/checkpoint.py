"""Resume checkpoints: the Trainer's state plus the run's bookkeeping, written atomically.

A checkpoint is for resuming a run on the same machine, not for deploying (that is the
bundle). It holds only tensors and plain containers, so it loads with
torch.load(weights_only=True): no pickled objects, no code runs on load.

The file is written to a temporary name in the same directory, flushed to disk, then renamed
over the previous checkpoint (os.replace is atomic on POSIX), so a kill at any moment leaves
either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "dinrec.checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write {"format", "version", **state} to `path` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint (weights_only: no code execution)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no checkpoint at {file}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{file} is not a dinrec checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{file}: checkpoint version {state.get('version')!r} is not supported "
                         f"(expected {CHECKPOINT_VERSION})")
    return dict(state)
