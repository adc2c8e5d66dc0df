"""Each rank's rows of a dataset split under torchrun (in memory, not streamed).

A rank reads only its row range of the train split (boundaries moved to user boundaries,
so each user's validation rows are held out as in one process) and of the test split;
training.batch_size is the global batch (batch_size / world per rank). Used by
dinrec.experiment.runner when torchrun started several workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from dinrec.data.dataset import Dataset, to_numpy
from dinrec.data.protocols.samples import USER_KEY
from dinrec.data.splits import last_fraction_mask
from dinrec.experiment.run_dir import evaluate_source
from dinrec.experiment.split_arrays import SplitArrays, batches
from dinrec.experiment.streaming import split_loader
from dinrec.training.distributed.launch import all_reduce_int, current
from dinrec.training.distributed.sharding import ShardBatches
from dinrec.training.distributed.sync import gather_scores


def _row_group_starts(pf: pq.ParquetFile) -> np.ndarray:
    """[G + 1] first row of each row group, then the row count."""
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def user_boundary(path: Path, position: int, column: str) -> int:
    """The first row at or after `position` that starts a new run of `column` (a user).

    Reads only that column of the row groups from the one holding row position - 1 on,
    until the value changes (a user's rows are contiguous in a split).
    """
    pf = pq.ParquetFile(path)
    starts = _row_group_starts(pf)
    total = int(starts[-1])
    if position <= 0 or position >= total:
        return min(max(position, 0), total)
    group = int(np.searchsorted(starts, position - 1, side="right") - 1)
    previous = None
    while group < len(starts) - 1:
        keys = pf.read_row_group(group, columns=[column]).column(0).to_numpy()
        offset = int(starts[group])
        begin = 0
        if previous is None:
            previous = keys[position - 1 - offset]
            begin = position - offset
        changed = np.flatnonzero(keys[begin:] != previous)
        if changed.size:
            return offset + begin + int(changed[0])
        group += 1
    return total


def shard_range(num_rows: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of rank's equal share of num_rows."""
    return rank * num_rows // world, (rank + 1) * num_rows // world


def read_rows(dataset: Dataset, split: str, lo: int, hi: int) -> SplitArrays:
    """Rows [lo, hi) of a split as SplitArrays, reading only the row groups that hold them."""

    pf = pq.ParquetFile(dataset.split_path(split))
    starts = _row_group_starts(pf)
    groups = [g for g in range(len(starts) - 1) if starts[g] < hi and starts[g + 1] > lo]
    if groups:
        table = pf.read_row_groups(groups).slice(lo - int(starts[groups[0]]), hi - lo)
    else:  # an empty range: ShardBatches then fails on every rank together
        table = pf.schema_arrow.empty_table()
    x, y = to_numpy(table)
    return SplitArrays(x, y, table.column(USER_KEY).to_numpy().astype(np.int64))


def split_rows(dataset: Dataset, split: str, rank: int, world: int) -> tuple[int, int]:
    """This rank's [lo, hi) of a split, with both ends on user boundaries."""

    path = dataset.split_path(split)
    total = pq.ParquetFile(path).metadata.num_rows
    lo, hi = shard_range(total, rank, world)
    return user_boundary(path, lo, USER_KEY), user_boundary(path, hi, USER_KEY)


def evaluate_shard(
    model: Any, dataset: Dataset, split: str, batch_size: int, streaming: bool = False
) -> dict[str, float]:
    """{"auc", "gauc", "logloss"} over a whole split, each rank scoring its row range (or,
    streaming, its row groups: every row on one rank, so the gather needs no row ids)."""

    env = current()
    source: Any
    if streaming:
        source = split_loader(model.schema, dataset, split, batch_size,
                              shard=(env.rank, env.world_size))
    else:
        total = pq.ParquetFile(dataset.split_path(split)).metadata.num_rows
        lo, hi = shard_range(total, env.rank, env.world_size)
        part = batches(model.schema, read_rows(dataset, split, lo, hi), batch_size, False, 0)
        source = ShardBatches(part.features, part.labels, batch_size)
    return evaluate_source(model, source, gather_scores)


def row_range_sources(
    schema: Any, dataset: Dataset, t: Any, env: Any, log: Any
) -> tuple[ShardBatches, ShardBatches | None]:
    """(train, validation or None) of this rank's row range of the train split, in memory."""

    world = env.world_size
    lo, hi = split_rows(dataset, "train", env.rank, world)
    arrays = read_rows(dataset, "train", lo, hi)
    ids = torch.arange(lo, hi)
    validation = None
    if t.validation_fraction > 0:
        held = last_fraction_mask(arrays.groups, t.validation_fraction)
        if all_reduce_int(int(held.any()), "max") == 0:
            raise ValueError(f"training.validation_fraction={t.validation_fraction} leaves no "
                             "validation rows; change it (0 disables validation)")
        part = batches(schema, arrays.take(held), t.eval_batch_size, False, t.seed)
        validation = ShardBatches(part.features, part.labels, t.eval_batch_size,
                                  row_ids=ids[torch.from_numpy(held)])
        arrays = arrays.take(~held)
    part = batches(schema, arrays, t.batch_size // world, True, t.seed)
    train = ShardBatches(part.features, part.labels, part.batch_size, shuffle=True, seed=t.seed)
    log(f"rank {env.rank}: train rows [{lo}, {hi}), {train.local_rows} for training", echo=False)
    return train, validation
