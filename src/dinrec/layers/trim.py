"""Per-batch dynamic padding: id lists cut to the longest real length in the batch.

Samples are stored padded to maxlen (e.g. 1,000), but a batch's longest history is often much
shorter. Cutting every [B, T] list input to [B, T_batch] before the forward pass is exact: the
columns cut are padding in every row of the batch (by the length input, or id 0 everywhere),
and attention packs the valid positions in the same row-major order either way, so the
activation unit sees the same rows. What shrinks is everything still laid out as [B, T]: the
masks, the packing, pooled sequence features ([B, T, E] lookups) and their backward.

Example:
    >>> group = SequenceGroup(("hist_item_id",), None)
    >>> batch = {"hist_item_id": torch.tensor([[3, 0, 0, 0], [5, 2, 0, 0]])}
    >>> trim_padding(batch, (group,))["hist_item_id"].tolist()
    [[3, 0], [5, 2]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dinrec.schema import FeatureSchema

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SequenceGroup:
    """List inputs [B, T] that share one mask, and where the mask comes from.

    columns: id (and weight) lists cut together; the first is an id list.
    length: the length input [B] (DeepCTR's length_name), else the mask is ids != 0.
    """

    columns: tuple[str, ...]
    length: str | None


def sequence_groups(schema: FeatureSchema) -> tuple[SequenceGroup, ...]:
    """The schema's list inputs, grouped by mask: each attended history (its sequences and
    per-behavior values share the first sequence's mask), then each pooled VarLenSparseFeat
    with its weight list."""
    groups = []
    for history in schema.groups:
        weight = history.weighted
        extra = (weight.weight_name,) if weight is not None else ()
        names = (*(c.name for c in history.columns), *(c.name for c in history.side), *extra)
        # dict.fromkeys: a weight column that is also a VarLenDenseFeat is cut once.
        groups.append(SequenceGroup(tuple(dict.fromkeys(names)), history.length_name))
    for col in schema.pooled:
        extra = (col.weight_name,) if col.weight_name is not None else ()
        groups.append(SequenceGroup((col.name, *extra), col.length_name))
    return tuple(groups)


def batch_width(batch: Batch, group: SequenceGroup) -> int:
    """Columns of the group's lists that hold a valid position in some row (at least 1)."""
    ids = batch[group.columns[0]]  # [B, T]
    if group.length is not None:
        longest = int(batch[group.length].max()) if ids.shape[0] else 0
        return max(1, min(longest, int(ids.shape[1])))
    used = (ids != 0).any(dim=0).nonzero()  # [W, 1] columns with an id in some row
    return max(1, int(used[-1, 0]) + 1) if used.numel() else 1


def trim_padding(batch: Batch, groups: tuple[SequenceGroup, ...]) -> Batch:
    """The batch with each group's lists cut to its batch_width (views, no copies)."""
    out = dict(batch)
    for group in groups:
        if group.columns[0] not in batch:
            continue
        width = batch_width(batch, group)
        for name in group.columns:
            if name in batch and batch[name].dim() >= 2 and batch[name].shape[1] > width:
                out[name] = batch[name][:, :width]
    return out
