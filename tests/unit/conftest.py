"""Tiny hand-built inputs shared by the unit tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dinrec.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat


def seed_example() -> tuple[dict[str, np.ndarray], np.ndarray, list[Any], list[str]]:
    """DeepCTR's DIN example data: 3 users, item/cate histories of maxlen 4."""
    cols: list[Any] = [
        SparseFeat("user", 3, embedding_dim=10),
        SparseFeat("gender", 2, embedding_dim=4),
        SparseFeat("item_id", 3 + 1, embedding_dim=8),
        SparseFeat("cate_id", 2 + 1, embedding_dim=4),
        DenseFeat("pay_score", 1),
        VarLenSparseFeat(
            SparseFeat("hist_item_id", 3 + 1, embedding_dim=8, embedding_name="item_id"),
            maxlen=4,
            length_name="seq_length",
        ),
        VarLenSparseFeat(
            SparseFeat("hist_cate_id", 2 + 1, embedding_dim=4, embedding_name="cate_id"),
            maxlen=4,
            length_name="seq_length",
        ),
    ]
    x = {
        "user": np.array([0, 1, 2]),
        "gender": np.array([0, 1, 0]),
        "item_id": np.array([1, 2, 3]),
        "cate_id": np.array([1, 2, 2]),
        "pay_score": np.array([0.1, 0.2, 0.3]),
        "hist_item_id": np.array([[1, 2, 3, 0], [3, 2, 1, 0], [1, 2, 0, 0]]),
        "hist_cate_id": np.array([[1, 2, 2, 0], [2, 2, 1, 0], [1, 2, 0, 0]]),
        "seq_length": np.array([3, 3, 2]),
    }
    return x, np.array([1, 0, 1]), cols, ["item_id", "cate_id"]


@pytest.fixture
def seed_data() -> tuple[dict[str, np.ndarray], np.ndarray, list[Any], list[str]]:
    return seed_example()


def random_history_data(
    n: int = 64, n_items: int = 30, n_cates: int = 5, maxlen: int = 6, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray, list[Any], list[str]]:
    """Random DIN inputs with mask-by-zero histories of varied length (no length input)."""
    rng = np.random.default_rng(seed)
    item_cate = rng.integers(1, n_cates, size=n_items)
    item_cate[0] = 0
    lens = rng.integers(0, maxlen + 1, size=n)
    hist = rng.integers(1, n_items, size=(n, maxlen))
    hist[np.arange(maxlen)[None, :] >= lens[:, None]] = 0
    items = rng.integers(1, n_items, size=n)
    cols: list[Any] = [
        SparseFeat("user_id", 10, embedding_dim=4),
        SparseFeat("item_id", n_items, embedding_dim=8),
        SparseFeat("cate_id", n_cates, embedding_dim=4),
        VarLenSparseFeat(
            SparseFeat("hist_item_id", n_items, embedding_dim=8, embedding_name="item_id"), maxlen
        ),
        VarLenSparseFeat(
            SparseFeat("hist_cate_id", n_cates, embedding_dim=4, embedding_name="cate_id"), maxlen
        ),
    ]
    x = {
        "user_id": rng.integers(0, 10, size=n),
        "item_id": items,
        "cate_id": item_cate[items],
        "hist_item_id": hist,
        "hist_cate_id": item_cate[hist],
    }
    y = rng.integers(0, 2, size=n)
    return x, y, cols, ["item_id", "cate_id"]


@pytest.fixture
def random_data() -> tuple[dict[str, np.ndarray], np.ndarray, list[Any], list[str]]:
    return random_history_data()
