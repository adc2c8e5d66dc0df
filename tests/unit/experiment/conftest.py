"""A tiny synthetic click-log dataset shared by the experiment tests (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dinrec.data.build import build_dataset

    out = tmp_path_factory.mktemp("experiment") / "tiny"
    build_dataset("synthetic", None, "click-log", out, maxlen=12, seed=3,
                  reader_options={"n_users": 40, "n_items": 90, "n_categories": 5,
                                  "mean_impressions": 20})
    return out


@pytest.fixture
def tiny_raw_config(tiny_dataset: Path) -> dict:
    """A raw config training a small DIN on tiny_dataset for one quick epoch."""
    return {
        "data": {"dataset": str(tiny_dataset)},
        "model": {"embedding_dim": 4, "dnn_hidden_units": [8], "att_hidden_size": [8],
                  "att_activation": "dice", "dnn_activation": "prelu"},
        "training": {"epochs": 1, "batch_size": 64, "validation_fraction": 0.2,
                     "num_threads": 1},
        "output": {"checkpoint_every": 0, "plots": False},
    }
