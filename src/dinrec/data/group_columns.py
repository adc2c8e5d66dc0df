"""A dataset's history-group columns: their Parquet fields, their rows, their feature columns.

A dataset built with history groups (`dinrec data build --history-group buy=buy+cart`) holds,
beside DeepCTR's hist_item_id / hist_cate_id, per group g: `g_hist_item_id`,
`g_hist_cate_id` (list<id> of length maxlen, 0-padded), `g_hist_len`, and with the time gap
`g_hist_time_gap` (list<float32>, log1p hours before the sample, 0 at padding); the time
gap also gives the protocol's own history a `hist_time_gap`. They are appended after the
plain columns, so a dataset without groups keeps its layout byte for byte.

The rows are gathered a row group at a time from a BehaviorGroups (sorted and encoded
once), so a split's [N, maxlen] group matrices are never held whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from dinrec.data.protocols.behavior_groups import (
    TIME_GAP,
    BehaviorGroups,
    group_prefix,
    time_gaps,
)
from dinrec.data.protocols.history import gather_spans
from dinrec.data.protocols.samples import CATE_ID, ITEM_ID
from dinrec.feature_column import FeatureColumn, SparseFeat, VarLenDenseFeat, VarLenSparseFeat

MAIN_TIME_GAP = group_prefix("") + TIME_GAP  # "hist_time_gap"
_FLOAT_ELEMENT = pa.field("element", pa.float32(), nullable=False)


def group_column_names(groups: Sequence[str], time_gap: bool) -> list[str]:
    """The extra columns, in file order: hist_time_gap, then per group ids, len, time gap."""
    names = [MAIN_TIME_GAP] if time_gap else []
    for group in groups:
        prefix = group_prefix(group)
        names += [prefix + ITEM_ID, prefix + CATE_ID, prefix + "len"]
        names += [prefix + TIME_GAP] if time_gap else []
    return names


def group_fields(
    groups: Sequence[str], time_gap: bool, id_type: pa.DataType
) -> list[pa.Field]:
    """Parquet fields of the extra columns (non-null list elements, as the plain lists)."""
    ids = pa.list_(pa.field("element", id_type, nullable=False))
    out = []
    for name in group_column_names(groups, time_gap):
        kind = (pa.list_(_FLOAT_ELEMENT) if name.endswith(TIME_GAP)
                else id_type if name.endswith("_len") else ids)
        out.append(pa.field(name, kind, nullable=False))
    return out


def group_arrays(
    schema: pa.Schema,
    groups: BehaviorGroups | None,
    time_gap: bool,
    users: np.ndarray,
    timestamps: np.ndarray,
    main: tuple[np.ndarray, np.ndarray, np.ndarray, int],
) -> list[pa.Array]:
    """One row group's extra columns, in group_column_names order.

    Args:
        schema: the split's schema (its fields give the types).
        groups: the dataset's groups, or None for none.
        time_gap: write the time gaps.
        users: [R] raw users of the rows; timestamps: [R] int64 seconds.
        main: (history timestamps [M], span starts [R], span lengths [R], maxlen) of the
            protocol's own history, for hist_time_gap.
    """
    values: dict[str, np.ndarray] = {}
    if time_gap:
        when, start, length, maxlen = main
        values[MAIN_TIME_GAP] = time_gaps(timestamps, gather_spans(when, start, length, maxlen),
                                          length)
    if groups is not None:
        values.update(groups.histories(users, timestamps, time_gap=time_gap))
    names = group_column_names(groups.names if groups is not None else [], time_gap)
    return [_arrow(values[name], schema.field(name).type) for name in names]


def _arrow(matrix: np.ndarray, kind: pa.DataType) -> pa.Array:
    """[R] -> a scalar array; [R, T] -> a list array of fixed length T."""
    if not pa.types.is_list(kind):
        return pa.array(matrix, kind)
    rows, width = matrix.shape
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)  # [R + 1]
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), kind.value_type),
                                    type=kind)


def group_feature_columns(
    groups: Sequence[str], time_gap: bool, maxlen: int, sizes: Mapping[str, int],
    embedding_dim: int | str,
) -> list[FeatureColumn]:
    """Each group's VarLenSparseFeats (sharing the item_id / cate_id tables) and, with the
    time gap, one VarLenDenseFeat per attended history (hist_time_gap first)."""
    columns: list[FeatureColumn] = [VarLenDenseFeat(MAIN_TIME_GAP, maxlen)] if time_gap else []
    for group in groups:
        prefix = group_prefix(group)
        for target in (ITEM_ID, CATE_ID):
            inner = SparseFeat(prefix + target, sizes[target], embedding_dim=embedding_dim,
                               embedding_name=target)
            columns.append(VarLenSparseFeat(inner, maxlen=maxlen))
        if time_gap:
            columns.append(VarLenDenseFeat(prefix + TIME_GAP, maxlen))
    return columns
