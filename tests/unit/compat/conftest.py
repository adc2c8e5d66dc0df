"""The DeepCTR tutorial's DIN example, loaded from examples/ so the file itself is tested."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def tutorial_example() -> tuple[dict[str, Any], Any, list[Any], list[str]]:
    """(x, y, feature_columns, behavior_feature_list) of examples/deepctr_din_shared_vocab.py."""
    module = runpy.run_path(str(EXAMPLES / "deepctr_din_shared_vocab.py"))
    return module["get_xy_fd"]()  # type: ignore[no-any-return]


@pytest.fixture
def tutorial() -> tuple[dict[str, Any], Any, list[Any], list[str]]:
    return tutorial_example()
