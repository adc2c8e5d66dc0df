"""Bundles broken on purpose, for the tests that a server refuses them."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file


def poisoned_copy(bundle: Path, target: Path) -> Path:
    """A copy of `bundle` whose floating-point weights are all NaN, written behind
    save_model's back (as a corrupted file or another writer would)."""
    shutil.copytree(bundle, target)
    weights = target / "weights.safetensors"
    state = load_file(str(weights))
    save_file({k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()},
              str(weights))
    return target
