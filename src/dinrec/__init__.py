"""dinrec: the Deep Interest Network (Zhou et al., KDD 2018) in PyTorch."""

from __future__ import annotations

from typing import Any

from dinrec.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(path: Any) -> Any:
    """Load a model saved with model.save(path) / dinrec.bundle.save_model."""
    from dinrec.models import load_model as _load

    return _load(path)
