"""model.fit on a ParquetBatchLoader: a dataset bigger than the loader's memory budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dinrec.data.build import build_dataset
from dinrec.data.dataset import feature_columns, load_dataset
from dinrec.data.loader import ParquetBatchLoader
from dinrec.models import DIN

MAXLEN = 10
# Columns that identify a sample well enough to compare row multisets between the file and
# what the loader yielded (a row seen twice and another never would change the multiset).
ROW_KEY = ("user_key", "item_id", "hist_item_id", "hist_len", "label")


class RowRecorder:
    """Wraps a loader and records the rows of every batch it yields, per epoch."""

    def __init__(self, loader: ParquetBatchLoader) -> None:
        self.loader = loader
        self.epochs: list[list[np.ndarray]] = []

    @property
    def num_rows(self) -> int:
        return self.loader.num_rows

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        seen: list[np.ndarray] = []
        self.epochs.append(seen)
        for features, labels in self.loader:
            seen.append(_row_keys({**features, "label": labels}))
            yield features, labels


def _row_keys(columns: dict[str, torch.Tensor] | dict[str, np.ndarray]) -> np.ndarray:
    """[N, K] int64: one row per sample, the ROW_KEY columns side by side."""
    parts = [np.asarray(columns[name]).astype(np.int64).reshape(len(columns["label"]), -1)
             for name in ROW_KEY]
    return np.concatenate(parts, axis=1)


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Intra-op threads spin on a busy 2-core machine: tiny batches run ~20x faster on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("streaming") / "syn"
    # Small row groups: the loader must stream across many of them within its budget.
    build_dataset("synthetic", None, "click-log", out, maxlen=MAXLEN, seed=3,
                  reader_options={"n_users": 80, "n_items": 300, "n_categories": 6,
                                  "mean_impressions": 30.0},
                  row_group_size=250)
    return out


def test_fit_streams_every_row_once_per_epoch_within_budget(dataset_dir: Path,
                                                           one_thread: None) -> None:
    dataset = load_dataset(dataset_dir)
    x, y = dataset.to_numpy("train", [*dataset.meta.sparse_features, "hist_item_id",
                                      "hist_cate_id", "user_key", "hist_len"])
    in_memory = sum(a.nbytes for a in x.values()) + y.nbytes
    budget = in_memory // 4
    loader = ParquetBatchLoader(dataset_dir / "train.parquet", 64,
                                memory_budget_bytes=budget, shuffle_buffer_rows=1 << 20,
                                read_chunk_rows=256, seed=5)
    assert loader.buffer_rows < loader.num_rows  # the window cannot hold the whole split
    recorder = RowRecorder(loader)

    columns, history = feature_columns(dataset, embedding_dim=4)
    # Full-table L2: MBA (the default) first reads the data once more to count id frequencies.
    model = DIN(columns, history, dnn_hidden_units=(16,), att_hidden_size=(8,), seed=0,
                embedding_regularization="l2")
    model.compile("adam", "binary_crossentropy", lr=1e-2)
    model.fit(recorder, epochs=2, verbose=0)

    assert 0 < loader.peak_buffered_bytes <= budget
    expected = _sorted_rows(_row_keys({**x, "label": y}))
    assert len(recorder.epochs) == 2
    for seen in recorder.epochs:
        assert np.array_equal(_sorted_rows(np.concatenate(seen)), expected)
    # A shuffled stream: the two epochs visit the rows in different orders.
    assert not np.array_equal(np.concatenate(recorder.epochs[0]),
                              np.concatenate(recorder.epochs[1]))

    test_loader = ParquetBatchLoader(dataset_dir / "test.parquet", 512, shuffle=False)
    probabilities = model.predict(test_loader)
    assert probabilities.shape == (test_loader.num_rows, 1)
    assert np.isfinite(probabilities).all()
    assert ((probabilities > 0) & (probabilities < 1)).all()
