"""Shared fixtures: where the real data copied for the project lives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# One intra-op thread: on this shared 2-core machine two threads stall whenever another
# process holds a core (a tiny DIN epoch: 7.8 s with 2 threads vs 0.3 s with 1).
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def shared_file():
    """A function: relative path under ../shared/data -> Path, skipping when it is absent."""

    def get(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.exists():
            pytest.skip(f"real data {path} is absent (../shared/data sits beside the checkout)")
        return path

    return get
