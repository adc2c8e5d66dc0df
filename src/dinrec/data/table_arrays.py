"""A dataset split's Parquet table as the (x, y) numpy arrays that model.fit takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dinrec.data.protocols.samples import HIST_LEN, LABEL, TIMESTAMP, USER_KEY

# Columns that describe a sample but are not model inputs.
NON_FEATURE_COLUMNS = (LABEL, TIMESTAMP, USER_KEY, HIST_LEN)


def to_numpy(
    table: pa.Table, feature_names: Sequence[str] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A split table -> (x, y) for model.fit(x, y).

    Args:
        table: a split (or a slice of one) as read from Parquet.
        feature_names: the x keys; default every column but label, timestamp, user_key and
            hist_len (add e.g. "hist_len" when the columns use it as length_name).

    Returns:
        x: {name: int64 [N], or [N, T] for list columns}; y: float32 [N] labels.
    """
    names = list(feature_names) if feature_names is not None else [
        name for name in table.column_names if name not in NON_FEATURE_COLUMNS
    ]
    missing = [name for name in [*names, LABEL] if name not in table.column_names]
    if missing:
        raise KeyError(f"table has no columns {missing}; it has {table.column_names}")
    x = {name: _column_to_numpy(name, table.column(name)) for name in names}
    y = table.column(LABEL).to_numpy().astype(np.float32)  # [N]
    return x, y


def _column_to_numpy(name: str, column: pa.ChunkedArray) -> np.ndarray:
    """One column as int64 [N], or [N, T] for a fixed-length list column."""
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        return column.to_numpy().astype(np.int64)
    parts: list[np.ndarray] = []
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)  # [n]
        if (lengths != lengths[0]).any() or (parts and lengths[0] != parts[0].shape[1]):
            raise ValueError(f"list column {name!r} has rows of different lengths")
        # flatten() honours a sliced chunk's offset; .values would return the whole buffer.
        values = chunk.flatten().to_numpy(zero_copy_only=False)
        kind = np.float32 if pa.types.is_floating(chunk.type.value_type) else np.int64
        parts.append(values.astype(kind).reshape(len(chunk), int(lengths[0])))  # [n, T]
    # An empty table carries no list length: [0, 0].
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.int64)  # [N, T]
