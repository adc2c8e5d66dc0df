"""Loader throughput benchmark: samples/s of ParquetBatchLoader on one thread.

Writes a synthetic sample store shaped like the one the dataset builder writes (ids stored as
dinrec.data.dataset stores them, int32 below 2**31, profile columns, two post-padded list
history columns of length maxlen, label, timestamp; the dataset's encodings: PLAIN lz4 lists,
dictionary-encoded zstd scalars, statistics) to a
temporary directory, then times full epochs with torch and Arrow both limited to one thread and
reports the median.

Usage:
    python bench/loader_throughput.py [--rows 2000000] [--maxlen 50] [--batch-size 4096]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dinrec.data.loader import ParquetBatchLoader
from dinrec.data.parquet.write_options import (
    id_storage_type,
    parquet_compression,
    parquet_dictionary_columns,
)


def write_store(
    path: Path, rows: int, maxlen: int, row_group_rows: int, seed: int,
    non_null_elements: bool = False,
) -> None:
    """Writes `rows` synthetic samples, one row group at a time (bounded memory).

    Schema and writer settings mirror dinrec.data.dataset (non-null fields, its per-column
    codecs, statistics, one row group per `row_group_rows`). non_null_elements declares the
    list elements non-null too, which lets Arrow skip a definition level per value when
    decoding.
    """
    rng = np.random.default_rng(seed)
    n_items, n_cates, n_users = 100_000, 1_000, 500_000
    schema = _schema(non_null_elements, id_storage_type(n_users))
    with pq.ParquetWriter(path, schema, compression=parquet_compression(schema),
                          use_dictionary=parquet_dictionary_columns(schema),
                          write_statistics=True) as writer:
        for start in range(0, rows, row_group_rows):
            n = min(row_group_rows, rows - start)
            # Zipf-like ids, like real logs; post-padded histories of random length.
            items = rng.zipf(1.2, size=(n, maxlen + 1)) % n_items + 2  # [n, T + 1]
            lengths = rng.integers(1, maxlen + 1, size=n)
            pad = np.arange(maxlen)[None, :] >= lengths[:, None]  # [n, T]
            hist_item = np.where(pad, 0, items[:, 1:])
            hist_cate = np.where(pad, 0, items[:, 1:] % n_cates + 2)
            offsets = pa.array(np.arange(0, n * maxlen + 1, maxlen, dtype=np.int32))
            users = rng.integers(2, n_users, n)
            lists = {name: pa.ListArray.from_arrays(
                offsets, pa.array(values.ravel(), schema.field(name).type.value_type),
                type=schema.field(name).type)
                for name, values in (("hist_item_id", hist_item), ("hist_cate_id", hist_cate))}
            columns = {
                "user_key": users, "user_id": users,
                "gender": rng.integers(2, 4, n), "age": rng.integers(2, 7, n),
                "item_id": items[:, 0], "cate_id": items[:, 0] % n_cates + 2,
                **lists,
                "hist_len": lengths,
                "label": rng.integers(0, 2, n).astype(np.int8),
                "timestamp": 1_600_000_000 + start + np.arange(n, dtype=np.int64),
            }
            writer.write_table(pa.table(columns, schema=schema), row_group_size=row_group_rows)


def _schema(non_null_elements: bool, id_type: pa.DataType) -> pa.Schema:
    """dinrec's dataset layout: ids as the writer stores them (write_options.id_storage_type)."""
    ids = ["user_key", "user_id", "gender", "age", "item_id", "cate_id"]
    fields = [pa.field(c, id_type, nullable=False) for c in ids]
    element = pa.field("element", id_type, nullable=not non_null_elements)
    fields += [pa.field(c, pa.list_(element), nullable=False)
               for c in ("hist_item_id", "hist_cate_id")]
    fields += [pa.field("hist_len", id_type, nullable=False),
               pa.field("label", pa.int8(), nullable=False),
               pa.field("timestamp", pa.int64(), nullable=False)]
    return pa.schema(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--maxlen", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--row-group-rows", type=int, default=65_536)
    parser.add_argument("--shuffle-buffer-rows", type=int, default=None,
                        help="default: the loader's")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-shuffle", action="store_true")
    parser.add_argument("--non-null-elements", action="store_true",
                        help="declare list elements non-null (a faster-decoding store)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.parquet"
        start = time.perf_counter()
        write_store(path, args.rows, args.maxlen, args.row_group_rows, seed=0,
                    non_null_elements=args.non_null_elements)
        print(f"wrote {args.rows:,} rows (maxlen {args.maxlen}) in "
              f"{time.perf_counter() - start:.1f} s: {path.stat().st_size / 2**20:.0f} MiB")
        buffer = {} if args.shuffle_buffer_rows is None else {
            "shuffle_buffer_rows": args.shuffle_buffer_rows}
        loader = ParquetBatchLoader(path, args.batch_size, shuffle=not args.no_shuffle, **buffer)
        rates, cpu_rates = [], []
        for epoch in range(args.epochs):
            loader.set_epoch(epoch)
            start, cpu_start = time.perf_counter(), time.process_time()
            rows = sum(len(labels) for _, labels in loader)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            assert rows == args.rows
            rates.append(rows / elapsed)
            # CPU time as well: on a shared machine, wall time also counts other processes.
            cpu_rates.append(rows / cpu)
            print(f"epoch {epoch}: {rows / elapsed:,.0f} samples/s wall, "
                  f"{rows / cpu:,.0f} per CPU second ({elapsed:.2f} s)")
        print(f"median: {statistics.median(rates):,.0f} samples/s wall, "
              f"{statistics.median(cpu_rates):,.0f} per CPU second "
              f"(batch_size {args.batch_size}, shuffle={not args.no_shuffle}, "
              f"window {loader.buffer_rows:,} rows, one thread, "
              f"peak buffered {loader.peak_buffered_bytes / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
