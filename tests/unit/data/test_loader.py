"""Tests for the streaming Parquet batch loader (dinrec.data.loader)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dinrec.data.loader import ParquetBatchLoader, list_column_to_numpy
from dinrec.data.parquet.footers import read_layout
from dinrec.data.parquet.write_options import parquet_compression


def write_store(
    path: Path, n_rows: int, *, maxlen: int = 5, row_group_size: int = 100, start: int = 0,
    **write_options: Any,
) -> Path:
    """A sample store whose rows are self-describing: user_id is the row id r, and
    hist_item_id[r] = 10 * r + [0..T), label = r % 2, price = r / 2, so a test can check that
    every column of a yielded row comes from the same stored row. write_options go to
    pq.write_table (codecs, statistics)."""
    rows = np.arange(start, start + n_rows, dtype=np.int64)
    hist = rows[:, None] * 10 + np.arange(maxlen)  # [N, T]
    offsets = pa.array(np.arange(0, n_rows * maxlen + 1, maxlen, dtype=np.int32))
    table = pa.table({
        "user_id": rows,
        "item_id": rows % 7,
        "gender": (rows % 3).astype(np.int32),
        "hist_item_id": pa.ListArray.from_arrays(offsets, pa.array(hist.ravel())),
        "hist_cate_id": pa.ListArray.from_arrays(offsets, pa.array(hist.ravel() % 5)),
        "price": rows / 2.0,
        "label": (rows % 2).astype(np.int8),
        "timestamp": 1_600_000_000 + rows,
    })
    pq.write_table(table, path, row_group_size=row_group_size, **write_options)
    return path


def collect(loader: ParquetBatchLoader) -> np.ndarray:
    """Row ids (user_id) in yielded order, checking each row's columns agree."""
    ids = []
    for features, labels in loader:
        rows = features["user_id"]
        hist = features["hist_item_id"]
        assert torch.equal(hist, rows[:, None] * 10 + torch.arange(hist.shape[1]))
        assert torch.equal(labels, (rows % 2).float())
        ids.append(rows.numpy())
    return np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "train.parquet", 1000)


def test_unshuffled_epoch_yields_every_row_once_in_file_order(store: Path) -> None:
    loader = ParquetBatchLoader(store, 64, shuffle=False)
    np.testing.assert_array_equal(collect(loader), np.arange(1000))


def test_shuffled_epoch_yields_every_row_once(store: Path) -> None:
    loader = ParquetBatchLoader(store, 64, shuffle_buffer_rows=300, read_chunk_rows=37)
    ids = collect(loader)
    np.testing.assert_array_equal(np.sort(ids), np.arange(1000))
    assert not np.array_equal(ids, np.arange(1000))


def test_batches_have_trainer_dtypes_and_shapes(store: Path) -> None:
    loader = ParquetBatchLoader(store, 64)
    batches = list(loader)
    features, labels = batches[0]
    assert set(features) == {"user_id", "item_id", "gender", "hist_item_id", "hist_cate_id",
                             "price"}
    for name in ("user_id", "item_id", "gender"):
        assert features[name].dtype == torch.int64 and features[name].shape == (64,)
    for name in ("hist_item_id", "hist_cate_id"):
        assert features[name].dtype == torch.int64 and features[name].shape == (64, 5)
    assert features["price"].dtype == torch.float32 and features["price"].shape == (64,)
    assert labels.dtype == torch.float32 and labels.shape == (64,)
    assert set(labels.unique().tolist()) <= {0.0, 1.0}
    # 1000 = 15 * 64 + 40: every batch full but the last.
    assert [len(lab) for _, lab in batches] == [64] * 15 + [40]
    assert len(loader) == 16 and loader.num_rows == 1000
    assert loader.list_widths == {"hist_item_id": 5, "hist_cate_id": 5}


def test_drop_last_drops_the_partial_batch(store: Path) -> None:
    loader = ParquetBatchLoader(store, 64, drop_last=True)
    sizes = [len(lab) for _, lab in loader]
    assert sizes == [64] * 15 and len(loader) == 15


def test_columns_selects_features_and_keeps_the_label(store: Path) -> None:
    loader = ParquetBatchLoader(store, 100, columns=["hist_item_id", "user_id"], shuffle=False)
    features, labels = next(iter(loader))
    assert list(features) == ["hist_item_id", "user_id"]
    assert torch.equal(labels, (features["user_id"] % 2).float())


def test_timestamp_is_not_a_default_feature_but_can_be_asked_for(store: Path) -> None:
    assert "timestamp" not in ParquetBatchLoader(store, 10).feature_columns
    loader = ParquetBatchLoader(store, 10, columns=["timestamp"], shuffle=False)
    features, _ = next(iter(loader))
    assert features["timestamp"].dtype == torch.int64


def test_shards_partition_the_rows_by_row_group(store: Path) -> None:
    parts = [collect(ParquetBatchLoader(store, 32, shard=(rank, 3))) for rank in range(3)]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    for rank, ids in enumerate(parts):
        # 100 rows per row group: row group r holds ids [100 r, 100 r + 100).
        assert set((ids // 100) % 3) == {rank}
    assert [ParquetBatchLoader(store, 32, shard=(r, 3)).num_rows for r in range(3)] == [
        400, 300, 300]


def test_shard_without_row_groups_is_an_error(tmp_path: Path) -> None:
    path = write_store(tmp_path / "one.parquet", 50, row_group_size=100)
    with pytest.raises(ValueError, match="no row groups"):
        ParquetBatchLoader(path, 8, shard=(1, 2))


def test_set_epoch_changes_the_order_deterministically(store: Path) -> None:
    a = ParquetBatchLoader(store, 50, seed=3, shuffle_buffer_rows=400)
    b = ParquetBatchLoader(store, 50, seed=3, shuffle_buffer_rows=400)
    epoch0 = collect(a)
    np.testing.assert_array_equal(collect(b), epoch0)
    a.set_epoch(1)
    epoch1 = collect(a)
    assert not np.array_equal(epoch1, epoch0)
    b.set_epoch(1)
    np.testing.assert_array_equal(collect(b), epoch1)
    a.set_epoch(0)
    np.testing.assert_array_equal(collect(a), epoch0)


def test_seed_changes_the_order(store: Path) -> None:
    a = collect(ParquetBatchLoader(store, 50, seed=1))
    b = collect(ParquetBatchLoader(store, 50, seed=2))
    assert not np.array_equal(a, b)


def test_a_window_mixes_several_row_groups(store: Path) -> None:
    # 100-row row groups, a 400-row window: a batch draws from about four row groups.
    loader = ParquetBatchLoader(store, 50, shuffle_buffer_rows=400, read_chunk_rows=30)
    features, _ = next(iter(loader))
    assert len(np.unique(features["user_id"].numpy() // 100)) >= 3


def test_a_window_larger_than_the_data_shrinks_to_it(store: Path) -> None:
    assert ParquetBatchLoader(store, 64).buffer_rows == 1000


def test_ids_wait_in_the_window_as_int32_when_the_statistics_allow(store: Path) -> None:
    fits = read_layout([store]).fits_int32
    assert fits["user_id"] and fits["hist_item_id"] and fits["gender"]
    assert not fits["price"]  # floats are never narrowed


def test_ids_beyond_int32_and_files_without_statistics_stay_int64(tmp_path: Path) -> None:
    big = write_store(tmp_path / "big.parquet", 300, start=2**31 - 150)
    bare = write_store(tmp_path / "bare.parquet", 300, write_statistics=False)
    # Only the row groups past 2**31 fail; one is enough to keep the column int64.
    assert not read_layout([big]).fits_int32["user_id"]
    assert read_layout([big]).fits_int32["gender"]
    assert not any(read_layout([bare]).fits_int32.values())
    for path, first in ((big, 2**31 - 150), (bare, 0)):
        # collect() checks that hist and label match user_id row by row.
        ids = collect(ParquetBatchLoader(path, 64, shuffle_buffer_rows=128, read_chunk_rows=40))
        np.testing.assert_array_equal(np.sort(ids), first + np.arange(300))


def test_zstd_and_lz4_stores_yield_the_same_batches(tmp_path: Path) -> None:
    # Stores written before the lists moved to lz4 (zstd everywhere) still read the same.
    old = write_store(tmp_path / "old.parquet", 500, compression="zstd")
    schema = pq.read_schema(old)
    new = write_store(tmp_path / "new.parquet", 500, compression=parquet_compression(schema))
    assert pq.ParquetFile(new).metadata.row_group(0).column(3).compression == "LZ4"
    for epoch in range(2):
        batches = []
        for path in (old, new):
            loader = ParquetBatchLoader(path, 64, seed=5, shuffle_buffer_rows=200)
            loader.set_epoch(epoch)
            batches.append(list(loader))
        assert len(batches[0]) == len(batches[1]) == 8
        for (fa, la), (fb, lb) in zip(*batches, strict=True):
            assert torch.equal(la, lb)
            for name, tensor in fa.items():
                assert tensor.dtype == fb[name].dtype and torch.equal(tensor, fb[name])


def test_shuffled_batches_equal_the_stored_rows_and_span_windows(store: Path) -> None:
    # 1000 rows, a 300-row window, 64-row batches: leftovers carry over window boundaries.
    table = pq.read_table(store)
    hist = list_column_to_numpy(table["hist_cate_id"])
    loader = ParquetBatchLoader(store, 64, shuffle_buffer_rows=300, read_chunk_rows=37)
    seen = np.zeros(1000, dtype=np.int64)
    for features, labels in loader:
        rows = features["user_id"].numpy()
        seen[rows] += 1
        assert features["hist_cate_id"].dtype == torch.int64
        np.testing.assert_array_equal(features["hist_cate_id"].numpy(), hist[rows])
        np.testing.assert_array_equal(features["item_id"].numpy(), rows % 7)
        np.testing.assert_array_equal(features["gender"].numpy(), rows % 3)
        np.testing.assert_array_equal(features["price"].numpy(), (rows / 2).astype(np.float32))
        np.testing.assert_array_equal(labels.numpy(), (rows % 2).astype(np.float32))
    assert np.all(seen == 1)


def test_list_column_to_numpy_honours_the_slice_offset() -> None:
    lists = pa.array([[i, i + 1, i + 2] for i in range(0, 30, 3)])  # 10 rows, T = 3
    sliced = lists.slice(4, 3)  # rows 4, 5, 6
    # The pitfall: .values ignores the slice and returns all 30 values.
    assert len(sliced.values) == 30
    np.testing.assert_array_equal(
        list_column_to_numpy(sliced), [[12, 13, 14], [15, 16, 17], [18, 19, 20]])
    chunked = pa.chunked_array([lists.slice(0, 2), lists.slice(8, 2)])
    np.testing.assert_array_equal(list_column_to_numpy(chunked)[:, 0], [0, 3, 24, 27])


def test_list_column_to_numpy_rejects_ragged_and_null_lists() -> None:
    with pytest.raises(ValueError, match="not fixed-length"):
        list_column_to_numpy(pa.array([[1, 2], [3]]), "hist")
    with pytest.raises(ValueError, match="null"):
        list_column_to_numpy(pa.array([[1, 2], None]), "hist")


def test_ragged_list_column_in_a_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"hist_item_id": pa.array([[1, 2], [3, 4, 5]]),
                             "label": pa.array([0, 1])}), path)
    with pytest.raises(ValueError, match=r"hist_item_id.*not fixed-length"):
        ParquetBatchLoader(path, 2)


def test_string_columns_are_rejected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"item": pa.array(["a", "b"]), "label": pa.array([0, 1])}), path)
    with pytest.raises(TypeError, match="'item'"):
        ParquetBatchLoader(path, 2)


def test_unknown_columns_are_named(store: Path) -> None:
    with pytest.raises(KeyError, match="nope"):
        ParquetBatchLoader(store, 8, columns=["nope"])
    with pytest.raises(KeyError, match="click"):
        ParquetBatchLoader(store, 8, label_column="click")


def test_directory_of_parts_is_read_as_one_dataset(tmp_path: Path) -> None:
    write_store(tmp_path / "part-0.parquet", 120, row_group_size=50)
    write_store(tmp_path / "part-1.parquet", 80, row_group_size=50, start=120)
    loader = ParquetBatchLoader(tmp_path, 32, shard=(0, 2))
    # Row groups numbered across files: 0-2 in part-0, 3-4 in part-1; rank 0 reads 0, 2, 4.
    assert sorted(set(collect(loader) // 50)) == [0, 2, 3]
    assert loader.num_rows == 50 + 20 + 30


def test_directory_with_both_splits_asks_for_one(tmp_path: Path) -> None:
    write_store(tmp_path / "train.parquet", 10)
    write_store(tmp_path / "test.parquet", 10)
    with pytest.raises(ValueError, match=r"pass one split, e\.g\. .*train\.parquet"):
        ParquetBatchLoader(tmp_path, 4)


def test_dataset_bigger_than_the_budget_streams_within_it(tmp_path: Path) -> None:
    path = write_store(tmp_path / "big.parquet", 40_000, maxlen=20, row_group_size=2000)
    budget = 2_000_000
    loader = ParquetBatchLoader(path, 256, memory_budget_bytes=budget, read_chunk_rows=500)
    decoded_bytes = 40_000 * (2 * 20 * 8 + 4 * 8 + 4)  # two [T] int64 lists, scalars, label
    assert decoded_bytes > 5 * budget
    # An outside view too: Arrow's pool in use plus numpy's traced peak between batches (the
    # loader's arrays and the batch it yields; `seen` is allocated before tracing starts).
    seen = np.zeros(40_000, dtype=np.int64)
    outside_peak = 0
    tracemalloc.start()
    try:
        for features, _ in loader:
            _, numpy_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            outside_peak = max(outside_peak, numpy_peak + pa.total_allocated_bytes())
            seen[features["user_id"].numpy()] += 1
            del features  # the loop must not hold a batch while the next one is made
    finally:
        tracemalloc.stop()
    assert np.all(seen == 1)
    assert 0 < loader.peak_buffered_bytes <= budget
    assert outside_peak <= budget


def test_too_small_a_budget_is_an_error(store: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        ParquetBatchLoader(store, 512, memory_budget_bytes=10_000)


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.parquet"):
        ParquetBatchLoader(tmp_path / "nothing.parquet", 4)


def test_keep_yields_only_the_kept_rows_of_every_shard(tmp_path: Path) -> None:
    write_store(tmp_path / "a.parquet", 250, row_group_size=100)
    write_store(tmp_path / "b.parquet", 150, row_group_size=100, start=250)
    keep = np.arange(400) % 3 == 0  # rows 0, 3, 6, ... across both files
    shards = [ParquetBatchLoader(tmp_path, 16, shuffle=True, keep=keep, shard=(r, 2),
                                 read_chunk_rows=30) for r in range(2)]
    seen = np.concatenate([collect(s) for s in shards])
    assert sorted(seen.tolist()) == np.flatnonzero(keep).tolist()
    assert sum(s.num_rows for s in shards) == int(keep.sum()) == 134


def test_keep_of_the_wrong_length_is_an_error(store: Path) -> None:
    with pytest.raises(ValueError, match="keep must be a bool array of the 1000 rows"):
        ParquetBatchLoader(store, 8, keep=np.ones(999, dtype=bool))
