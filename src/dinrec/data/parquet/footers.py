"""What the streaming loader learns from Parquet footers alone: files, row groups, columns.

Nothing here decodes data: the schema, row group sizes, stored bytes, list widths and the
min/max statistics of every column chunk come from the file metadata, so a loader can plan its
memory and the dtypes of its shuffle window before reading a single row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class Column:
    """How one Parquet column becomes a tensor: output dtype and list width (0 = scalar).

    `store` is the dtype rows are held in while they wait in the shuffle window: int32 for an
    integer column whose statistics prove every value fits (ids usually do), which halves the
    bytes the window copy and the shuffle gather move; batches are widened back to `dtype`.
    """

    name: str
    dtype: np.dtype
    width: int
    chunk_row_bytes: int  # estimated bytes per row of a decoded chunk, Arrow and numpy
    store: np.dtype

    @property
    def row_bytes(self) -> int:
        """Bytes per row in the shuffle window."""
        return self.store.itemsize * max(self.width, 1)

    @property
    def out_row_bytes(self) -> int:
        """Bytes per row of a yielded batch."""
        return self.dtype.itemsize * max(self.width, 1)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.width,) if self.width else ()


@dataclass(frozen=True)
class RowGroup:
    file: int
    index: int
    num_rows: int
    # Per top-level column: compressed plus uncompressed (still encoded) column chunk bytes,
    # an upper estimate of what Arrow's reader holds for the row group besides decoded chunks.
    reader_bytes: dict[str, int]


@dataclass
class StoreLayout:
    """Schema, non-empty row groups (numbered across files) and per-column facts."""

    schema: pa.Schema
    metadata: list[pq.FileMetaData]
    groups: list[RowGroup]
    widths: dict[str, list[int]]  # list column -> values per row of each row group
    fits_int32: dict[str, bool]  # column -> every row group's min/max lies in int32


def resolve_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The .parquet files of a file, a directory of part files, or a list of files."""
    if not isinstance(path, str | Path):
        files = [Path(p) for p in path]
    elif Path(path).is_dir():
        files = sorted(Path(path).glob("*.parquet"))
        if {"train.parquet", "test.parquet"} <= {f.name for f in files}:
            raise ValueError(f"{path} holds both train.parquet and test.parquet; "
                             f"pass one split, e.g. {Path(path) / 'train.parquet'}")
    else:
        files = [Path(path)]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise FileNotFoundError(f"no Parquet file at {missing[0] if missing else path}")
    return files


def _fits_int32(chunk: pq.ColumnChunkMetaData) -> bool:
    stats = chunk.statistics
    if stats is None or not stats.has_min_max:
        return False
    lo, hi = stats.min, stats.max
    # bool is an int too, but booleans are read as float32 and never narrowed.
    return (isinstance(lo, int) and isinstance(hi, int)
            and _INT32.min <= lo and hi <= _INT32.max)


def read_layout(files: Sequence[Path]) -> StoreLayout:
    """Reads the footers of `files`, which must share one schema."""
    schema: pa.Schema | None = None
    metadata: list[pq.FileMetaData] = []
    groups: list[RowGroup] = []
    widths: dict[str, list[int]] = {}
    fits: dict[str, bool] = {}
    for f, file in enumerate(files):
        meta = pq.ParquetFile(file).metadata
        metadata.append(meta)
        file_schema = meta.schema.to_arrow_schema()
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise ValueError(f"{file} has schema {file_schema}, {files[0]} has {schema}")
        top = [meta.schema.column(j).path.split(".")[0] for j in range(meta.num_columns)]
        leaves = {name: j for j, name in enumerate(top) if "." in meta.schema.column(j).path}
        for r in range(meta.num_row_groups):
            rg = meta.row_group(r)
            if rg.num_rows == 0:
                continue
            stored: dict[str, int] = {}
            for j, name in enumerate(top):
                chunk = rg.column(j)
                size = chunk.total_compressed_size + chunk.total_uncompressed_size
                stored[name] = stored.get(name, 0) + size
                fits[name] = fits.get(name, True) and _fits_int32(chunk)
            groups.append(RowGroup(f, r, rg.num_rows, stored))
            for name, j in leaves.items():
                values = rg.column(j).num_values
                # A fractional width can never be a fixed length; keep it to report it.
                widths.setdefault(name, []).append(
                    values // rg.num_rows if values % rg.num_rows == 0 else -values)
    assert schema is not None
    return StoreLayout(schema, metadata, groups, widths, fits)


def describe_column(
    name: str, t: pa.DataType, widths: set[int], fits_int32: bool = False
) -> Column:
    """Output and window dtypes, list width and decoded bytes per row of one column."""
    width, value = 0, t
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if len(widths) > 1 or min(widths, default=0) < 0:
            raise ValueError(f"list column {name!r} is not fixed-length (row groups hold "
                             f"{sorted(widths)} values per row, negative = not a whole number)")
        width, value = (widths.pop() if widths else 0), t.value_type
    dtype: np.dtype
    if pa.types.is_integer(value):
        dtype = np.dtype(np.int64)
    elif pa.types.is_floating(value) or pa.types.is_boolean(value):
        dtype = np.dtype(np.float32)
    else:
        raise TypeError(f"column {name!r} has Arrow type {t}; the loader reads integer ids and "
                        "float values (map raw ids through the Vocabulary before writing)")
    # Values (bools: bits, then a byte each in numpy), an offset and validity bits per row.
    value_bytes = 2 if pa.types.is_boolean(value) else max(value.bit_width // 8, 1)
    est = value_bytes * max(width, 1) + (8 if width else 0) + width // 8 + 2
    store = np.dtype(np.int32) if fits_int32 and dtype == np.int64 else dtype
    return Column(name, dtype, width, est, store)
