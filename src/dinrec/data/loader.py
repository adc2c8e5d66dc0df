"""Streaming Parquet batch loader: row groups -> shuffled (features, labels) tensor batches.

Reads a sample store (one row per sample; int64 id columns, float columns and fixed-length
list<int64> history columns) in bounded memory, whatever the dataset size: Arrow record batches
of ``read_chunk_rows`` rows are decoded one at a time and copied into a preallocated shuffle
window; full windows are permuted and cut into batches; rows left over from a window move to the
front of the next one, so every batch but the last is full. Integer columns whose Parquet
statistics show every value fits int32 (ids do) wait in the window as int32 and are widened back
to int64 per batch: the copy and the random gather, most of the loader's time after Arrow's
decode, then move half the bytes.

Shuffling is two-level, as in a shuffle buffer: the order of the row groups is permuted every
epoch, and rows are permuted within a window spanning several row groups. The order depends
only on (seed, epoch, shard rank); call ``set_epoch`` before each epoch, as with
``torch.utils.data.DistributedSampler``.

Example:
    >>> loader = ParquetBatchLoader("data/synthetic/train.parquet", 1024)  # doctest: +SKIP
    >>> for epoch in range(2):  # doctest: +SKIP
    ...     loader.set_epoch(epoch)
    ...     for features, labels in loader:
    ...         ...  # features["hist_item_id"]: int64 [B, T]; labels: float32 [B]
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dinrec.data.parquet.footers import describe_column, read_layout, resolve_files

# Columns that are never features unless asked for by name.
_NON_FEATURES = ("timestamp",)


def list_column_to_numpy(array: pa.Array | pa.ChunkedArray, name: str = "column") -> np.ndarray:
    """A fixed-length list column as a [N, T] numpy array, zero-copy where Arrow allows.

    Uses ``flatten()``, which honours the slice offset of a sliced list array; ``.values``
    would return the whole child array and silently yield too many rows.

    Args:
        array: [N] list, large_list or fixed_size_list array (or chunked array) with no nulls,
            every list of the same length T.
        name: column name for error messages.

    Returns:
        [N, T] array of the value type (int64 ids stay int64).
    """
    if isinstance(array, pa.ChunkedArray):
        parts = [list_column_to_numpy(chunk, name) for chunk in array.chunks if len(chunk)]
        if not parts:
            return np.empty((0, 0), dtype=array.type.value_type.to_pandas_dtype())
        if len({p.shape[1] for p in parts}) > 1:
            raise ValueError(f"list column {name!r} is not fixed-length across chunks")
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
    n = len(array)
    if array.null_count:
        raise ValueError(f"list column {name!r} has {array.null_count} null lists; "
                         "pad histories with 0 instead")
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
    elif n == 0:
        width = 0
    else:
        lengths = np.diff(array.offsets.to_numpy())  # [N], honours the slice offset
        width = int(lengths[0])
        if lengths.min() != width or lengths.max() != width:
            raise ValueError(f"list column {name!r} is not fixed-length: lengths range "
                             f"{lengths.min()}..{lengths.max()}; pad to maxlen when writing")
    flat = array.flatten().to_numpy(zero_copy_only=False)  # [N * T]
    return flat.reshape(n, width)  # [N, T]


def _scalar_to_numpy(array: pa.Array, name: str) -> np.ndarray:
    if array.null_count:
        raise ValueError(f"column {name!r} has {array.null_count} nulls")
    return np.asarray(array.to_numpy(zero_copy_only=False))  # [N]


def _owns(a: np.ndarray) -> bool:
    """Whether `a` is (a view of) numpy-allocated memory rather than an Arrow buffer."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return bool(a.flags.owndata)


class ParquetBatchLoader:
    """Streams (features, labels) batches from Parquet sample files in bounded memory.

    Args:
        path: a .parquet file, a directory of .parquet part files, or a list of files.
        batch_size: rows per batch B.
        columns: feature columns; default all columns except the label and "timestamp".
        label_column: numeric label column, yielded as float32 [B].
        shuffle: permute row groups per epoch and rows within the shuffle window.
        shuffle_buffer_rows: rows in the shuffle window (capped by the memory budget).
        seed: base seed; the order depends only on (seed, epoch, shard rank).
        drop_last: drop the final partial batch.
        memory_budget_bytes: cap on the bytes the loader holds: window, permutation, one
            output batch, the decoded chunk and the reader's buffers (estimated from Parquet
            metadata, an upper bound against pyarrow's allocator); the window shrinks to fit.
            None = bounded by shuffle_buffer_rows.
        shard: (rank, world_size): read only row groups r (numbered across files) with
            r % world_size == rank. Ranks may get different numbers of batches (see len()).
        read_chunk_rows: rows per Arrow record batch decoded at a time.
        use_threads: let Arrow decode columns on its own thread pool (off: it would compete
            with torch's intra-op threads).
        keep: [total rows] bool over every row of the files in order (all shards'), True
            for the rows to yield; None yields all. A held-out split of a stored split (each
            user's last validation rows) is a mask, not a copy of the data: 1 byte a row.

    Yields:
        features: {name: tensor}; int64 [B] for scalar id columns, int64 [B, T] for list
        columns, float32 [B] (or [B, T]) for float columns. labels: float32 [B].

    Attributes:
        feature_columns: names of the yielded features, in order.
        buffer_rows, read_chunk_rows: the window and chunk sizes chosen within the budget.
        peak_buffered_bytes: the most bytes held at once so far (all epochs), by the same
            accounting as the budget.
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        batch_size: int,
        *,
        columns: Sequence[str] | None = None,
        label_column: str = "label",
        shuffle: bool = True,
        shuffle_buffer_rows: int = 262_144,
        seed: int = 0,
        drop_last: bool = False,
        memory_budget_bytes: int | None = None,
        shard: tuple[int, int] | None = None,
        read_chunk_rows: int = 16_384,
        use_threads: bool = False,
        keep: np.ndarray | None = None,
    ) -> None:
        if min(batch_size, shuffle_buffer_rows, read_chunk_rows) < 1:
            raise ValueError("batch_size, shuffle_buffer_rows and read_chunk_rows must be >= 1")
        self.files = resolve_files(path)
        self.batch_size = batch_size
        self.label_column = label_column
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.memory_budget_bytes = memory_budget_bytes
        self.use_threads = use_threads
        self.peak_buffered_bytes = 0
        self._epoch = 0
        self._rank, world = shard if shard is not None else (0, 1)
        if not 0 <= self._rank < world:
            raise ValueError(f"shard={shard} must be (rank, world_size) with 0 <= rank < world")

        layout = read_layout(self.files)
        schema, groups, widths = layout.schema, layout.groups, layout.widths
        self._metadata = layout.metadata
        available = list(schema.names)
        if label_column not in available:
            raise KeyError(f"label column {label_column!r} not in {self.files[0]}; "
                           f"columns: {available}")
        if columns is None:
            columns = [n for n in available if n != label_column and n not in _NON_FEATURES]
        missing = [c for c in columns if c not in available]
        if missing:
            raise KeyError(f"columns {missing} not in {self.files[0]}; columns: {available}")
        if label_column in columns:
            raise ValueError(f"label column {label_column!r} cannot also be a feature column")
        self.feature_columns: tuple[str, ...] = tuple(columns)
        self._columns = [describe_column(n, schema.field(n).type, set(widths.get(n, ())),
                                         layout.fits_int32.get(n, False))
                         for n in (*self.feature_columns, label_column)]
        if self._columns[-1].width:
            raise TypeError(f"label column {label_column!r} must be a scalar column")
        # Labels go to BCEWithLogits as float32, whatever integer type the store used.
        self._columns[-1] = replace(self._columns[-1], dtype=np.dtype(np.float32),
                                    store=np.dtype(np.float32))
        # First row of each row group in the files' concatenation (what `keep` indexes).
        starts = np.concatenate([[0], np.cumsum([g.num_rows for g in groups], dtype=np.int64)])
        if keep is not None and (keep.dtype != np.bool_ or keep.shape != (int(starts[-1]),)):
            raise ValueError(f"keep must be a bool array of the {int(starts[-1])} rows, got "
                             f"{keep.dtype} {keep.shape}")
        self._keep = keep
        mine = [i for i in range(len(groups)) if i % world == self._rank]
        self._groups = [groups[i] for i in mine]
        self._starts = [int(starts[i]) for i in mine]
        if shard is not None and not self._groups:
            raise ValueError(f"shard {shard} gets no row groups: the data has {len(groups)} "
                             f"row groups; write smaller row groups or use fewer ranks")
        self._num_rows = (sum(g.num_rows for g in self._groups) if keep is None else
                          sum(int(keep[s : s + g.num_rows].sum())
                              for s, g in zip(self._starts, self._groups, strict=True)))
        names = {c.name for c in self._columns}
        self._reader_bytes = [sum(v for k, v in g.reader_bytes.items() if k in names)
                              for g in self._groups]  # per row group, the columns read
        self.buffer_rows, self.read_chunk_rows = self._plan(shuffle_buffer_rows, read_chunk_rows)

    def _plan(self, buffer_rows: int, chunk_rows: int) -> tuple[int, int]:
        """Window capacity (rows) and decode chunk size that fit the memory budget."""
        row_bytes = sum(c.row_bytes for c in self._columns)  # in the window (int32 ids)
        out_row_bytes = sum(c.out_row_bytes for c in self._columns)  # in a batch (int64)
        chunk_row_bytes = sum(c.chunk_row_bytes for c in self._columns)
        budget = self.memory_budget_bytes
        # A window larger than the data (or a batch) would only waste memory; without
        # shuffling, a window only has to gather a batch from chunks.
        buffer_rows = max(1, min(buffer_rows, max(self._num_rows, self.batch_size)))
        if not self.shuffle:
            buffer_rows = min(buffer_rows, max(self.batch_size, chunk_rows))
        if budget is None:
            return max(buffer_rows, self.batch_size), chunk_rows
        # Plan within 90%: numpy and Arrow make small temporaries this accounting leaves out
        # (casts, permutation draws), seen as ~5% in tests/unit/data/test_loader.py.
        budget = budget * 9 // 10
        # The chunk in hand and the reader's decode buffers may take a quarter of the budget.
        chunk_rows = max(1, min(chunk_rows, budget // (12 * chunk_row_bytes)))
        # Fixed costs: the open row group and its chunks, one output batch, and either the
        # leftover copy or the narrow gather a batch column is widened from (each <= a batch).
        fixed = (max(self._reader_bytes, default=0) + 3 * chunk_rows * chunk_row_bytes
                 + 2 * self.batch_size * out_row_bytes)
        # Each window row also costs 8 bytes of permutation.
        capacity = min(buffer_rows, (budget - fixed) // (row_bytes + 8))
        if capacity < self.batch_size:
            # Enough whatever the chunk size: chunks then take at most a quarter of the budget.
            rest = fixed - 3 * chunk_rows * chunk_row_bytes + self.batch_size * (row_bytes + 8)
            need = (rest * 4 // 3 + 1) * 10 // 9 + 1
            raise ValueError(f"memory_budget_bytes={self.memory_budget_bytes} is too small for "
                             f"batch_size={self.batch_size} at {row_bytes} bytes per row; "
                             f"need >= {need}")
        return max(capacity, self.batch_size), chunk_rows

    @property
    def num_rows(self) -> int:
        """Rows this loader (this shard) yields per epoch, before drop_last."""
        return self._num_rows

    @property
    def decoded_bytes(self) -> int:
        """Bytes this shard's rows would take loaded whole as batch tensors (int64 ids)."""
        return self._num_rows * sum(c.out_row_bytes for c in self._columns)

    @property
    def list_widths(self) -> dict[str, int]:
        """Length T of each list feature column, e.g. {"hist_item_id": 50}."""
        return {c.name: c.width for c in self._columns[:-1] if c.width}

    def __len__(self) -> int:
        if self.drop_last:
            return self._num_rows // self.batch_size
        return math.ceil(self._num_rows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that, with the seed and shard rank, fixes the next iteration's order."""
        self._epoch = epoch

    def _track(self, nbytes: int) -> None:
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, nbytes)

    def _chunks(self, order: Sequence[int]) -> Iterator[tuple[list[np.ndarray], int]]:
        """Decoded record batches of the row groups in `order`: numpy arrays and held bytes.

        Held bytes count the chunk (whole referenced Arrow buffers, an over- rather than
        under-count for a sliced chunk, plus numpy copies such as bools) and an upper estimate
        of the reader's own state, checked against pyarrow's allocator: the row group's
        column chunks, compressed (pre-buffered) and decompressed, and decode buffers (values
        and levels) about twice a chunk.
        """
        columns = [c.name for c in self._columns]
        for r in order:
            g = self._groups[r]
            pf = pq.ParquetFile(self.files[g.file], metadata=self._metadata[g.file])
            try:
                batches = pf.iter_batches(batch_size=self.read_chunk_rows, row_groups=[g.index],
                                          columns=columns, use_threads=self.use_threads)
                row = self._starts[r]
                for rb in batches:
                    arrays = [
                        list_column_to_numpy(rb.column(i), c.name) if c.width
                        else _scalar_to_numpy(rb.column(i), c.name)
                        for i, c in enumerate(self._columns)
                    ]
                    if self._keep is not None:
                        mask = self._keep[row : row + rb.num_rows]
                        row += rb.num_rows
                        if not mask.all():
                            arrays = [a[mask] for a in arrays]
                    chunk = rb.get_total_buffer_size() + sum(a.nbytes for a in arrays if _owns(a))
                    del rb
                    yield arrays, 3 * chunk + self._reader_bytes[r]
                    # Drop the views before the next decode, so two chunks are never held.
                    del arrays
            finally:
                pf.close()

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self._epoch, self._rank])
        n_groups = len(self._groups)
        order = rng.permutation(n_groups).tolist() if self.shuffle else list(range(n_groups))
        cap = self.buffer_rows
        # [cap] or [cap, T] per column, in the storage dtype (int32 ids where they fit).
        window = [np.empty((cap, *c.shape), dtype=c.store) for c in self._columns]
        window_bytes = sum(w.nbytes for w in window)
        fill = 0
        for arrays, chunk_bytes in self._chunks(order):
            held = window_bytes + chunk_bytes
            self._track(held)
            n, pos = len(arrays[0]), 0
            while pos < n:
                take = min(cap - fill, n - pos)
                for w, a in zip(window, arrays, strict=True):
                    w[fill : fill + take] = a[pos : pos + take]  # casts to the storage dtype
                fill, pos = fill + take, pos + take
                if fill == cap:
                    fill = yield from self._emit(window, fill, rng, held, final=False)
            del arrays
        yield from self._emit(window, fill, rng, window_bytes, final=True)

    def _emit(
        self, window: list[np.ndarray], n: int, rng: np.random.Generator, held: int, final: bool
    ) -> Generator[tuple[dict[str, torch.Tensor], torch.Tensor], None, int]:
        """Yields the batches of the first n rows of the window; returns the rows carried over.

        Args:
            window: one array per column, [cap] or [cap, T].
            held: bytes held besides this method's own arrays (window, decoded chunk).
            final: also yield the last partial batch (unless drop_last); carry nothing.
        """
        b = self.batch_size
        perm = rng.permutation(n) if self.shuffle else None
        held += perm.nbytes if perm is not None else 0
        full = n // b
        for i in range(full + (1 if final and n % b and not self.drop_last else 0)):
            lo, hi = i * b, min((i + 1) * b, n)
            # Fresh copies, so a batch the consumer keeps never aliases the window the next
            # fill overwrites. numpy, not torch: torch's intra-op threads made this gather
            # 10x slower on a busy 2-core machine. The random gather moves int32 rows (half
            # the bytes, the part bounded by memory latency); widening the [B, T] result to
            # int64 is a sequential pass over cache-resident data.
            columns = zip(window, self._columns, strict=True)
            if perm is None:
                arrays = [w[lo:hi].astype(c.dtype) for w, c in columns]
                narrow = 0
            else:
                idx = perm[lo:hi]
                arrays = [np.take(w, idx, axis=0).astype(c.dtype, copy=False) for w, c in columns]
                # The int32 gather of the widest narrowed column, alive while it is widened.
                narrow = max((len(idx) * c.row_bytes for c in self._columns
                              if c.store != c.dtype), default=0)
            self._track(held + narrow + sum(a.nbytes for a in arrays))
            tensors = [torch.from_numpy(a) for a in arrays]
            yield dict(zip(self.feature_columns, tensors[:-1], strict=True)), tensors[-1]
        left = n - full * b
        if final or left == 0:
            return 0
        src = perm[full * b :] if perm is not None else np.arange(full * b, n)
        self._track(held + src.nbytes + max(w[:left].nbytes for w in window))
        for w in window:
            # The right side is gathered into a temporary (< B rows) before the write, so
            # overlapping source and destination rows are safe.
            w[:left] = w[src]
        return left

    def __repr__(self) -> str:
        return (f"ParquetBatchLoader({len(self.files)} file(s), rows={self._num_rows}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"buffer_rows={self.buffer_rows}, columns={list(self.feature_columns)})")
