"""`dinrec train` under torchrun: one experiment run trained data-parallel over the ranks.

    torchrun --nproc_per_node 2 -m dinrec train CONFIG.toml --out runs/x

run_experiment hands over to run_distributed when torchrun started several workers. Then:

- rank 0 creates the run directory and builds the dataset (if the config builds one); the
  other ranks wait for it, then open it;
- each rank reads only its row range of the train split (boundaries moved to user
  boundaries, so each user's validation rows are held out as in one process) and of the
  test split; training.batch_size is the global batch (batch_size / world per rank);
- rank 0 alone writes train.log, metrics.jsonl, checkpoints, the model bundle, results.json
  and plots, from the plain (unwrapped) model; validation and test scores are gathered from
  every rank, so the metrics cover every row once;
- after a torchrun restart (--max-restarts) the run continues from its last checkpoint: at
  most `output.checkpoint_every` steps are trained again, and none are lost.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow.parquet as pq
import torch

from dinrec.bundle import save_model
from dinrec.data.dataset import Dataset, to_numpy
from dinrec.data.protocols.samples import USER_KEY
from dinrec.data.splits import last_fraction_mask
from dinrec.experiment.checkpoint import CHECKPOINT_FILE
from dinrec.experiment.config import ConfigError, ExperimentConfig
from dinrec.experiment.data_source import prepare_dataset
from dinrec.experiment.recorder import RunLog, RunRecorder
from dinrec.experiment.run_dir import (
    BUNDLE_DIR,
    RESULTS_FILE,
    RunResult,
    build_experiment_model,
    bundle_extra,
    describe_model,
    evaluate_source,
    prepare_run_dir,
    read_result,
    resolve_device,
    resume_or_start,
    write_result,
)
from dinrec.experiment.sharded_run import (
    PlainSnapshot,
    QuietRecorder,
    ShardedCheckpoint,
    resume_sharded,
    shard_trainer,
)
from dinrec.experiment.split_arrays import SplitArrays, batches
from dinrec.experiment.streaming import split_loader, streamed_train, use_streaming
from dinrec.models import load_model
from dinrec.training.callbacks import Callback
from dinrec.training.distributed.ddp import wrap_trainer
from dinrec.training.distributed.launch import (
    StopSync,
    all_reduce_int,
    barrier,
    broadcast_object,
    current,
    destroy,
    init_from_env,
    run_main_first,
)
from dinrec.training.distributed.sharding import AgreedBatches, ShardBatches
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


def _row_range_sources(
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


class _Silent:
    """RunLog's interface for ranks other than 0: they write no log."""

    def __call__(self, message: str, echo: bool = True) -> None:
        return None


def run_distributed(
    config: ExperimentConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    verbose: int = 1,
    echo: TextIO | None = sys.stdout,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """run_experiment for one rank of a torchrun job (call it on every rank)."""

    t = config.training
    # cuda: nccl and the model on cuda:LOCAL_RANK; cpu: gloo.
    env = init_from_env(device=resolve_device(t.device).type, num_threads=t.num_threads or 1)
    try:
        return _run(config, Path(run_dir), resume, verbose, echo, env, callbacks)
    finally:
        destroy()


def _run(
    config: ExperimentConfig, run_dir: Path, resume: bool, verbose: int,
    echo: TextIO | None, env: Any, extra: Sequence[Callback],
) -> RunResult:

    start = time.perf_counter()
    t, main, world = config.training, env.is_main, env.world_size
    # Rank 0's directory: the CLI's default name holds a timestamp that may differ per rank.
    root = Path(broadcast_object(str(run_dir.resolve())))
    config = config.replace(output=dataclasses.replace(config.output, dir=str(root)))
    checkpoint = root / CHECKPOINT_FILE
    # A torchrun restart runs the same command again: continue from the last checkpoint.
    resume = resume or (env.restart_count > 0 and checkpoint.is_file())
    if resume and (root / RESULTS_FILE).is_file():
        return read_result(root)
    if t.batch_size % world:
        raise ConfigError(f"training.batch_size={t.batch_size} is the global batch and must be "
                          f"a multiple of the {world} ranks")

    def setup() -> Dataset:
        if main:
            prepare_run_dir(config, root, resume)
        return prepare_dataset(config.data, root, progress=verbose > 0 and main)

    dataset = run_main_first(setup)
    log: Any = RunLog(root, echo if verbose else None) if main else _Silent()
    log(f"{'resuming' if resume else 'starting'} run {config.output.name!r} in {root} on "
        f"{world} ranks ({env.backend}); dataset {dataset.path}")
    model = build_experiment_model(config, dataset)
    model.to(env.device)
    streaming, why = use_streaming(config.data, model.schema, dataset)
    log(f"samples {'streamed from Parquet' if streaming else 'loaded in memory'} ({why})")
    validation: Any
    if streaming:  # this rank's row groups (r % world == rank), through a shuffle window
        loader, validation = streamed_train(model.schema, dataset, config.data, t,
                                            shard=(env.rank, world))
        train: Any = AgreedBatches(loader)
        log(f"rank {env.rank}: {loader.num_rows} train rows streamed", echo=False)
    else:
        train, validation = _row_range_sources(model.schema, dataset, t, env, log)
    d = config.distributed
    sharded = d.embeddings == "torchrec"  # tables sharded by TorchRec (sharded_run.py)
    if sharded and streaming:
        raise ConfigError("distributed.embeddings = 'torchrec' reads the splits in memory "
                          "(its lookups are collective: every rank needs the same number of "
                          "evaluation batches); set data.streaming = false")
    if sharded:
        trainer = shard_trainer(model.trainer, config, log)
    else:
        trainer = wrap_trainer(model.trainer, sync_dice_stats=d.sync_dice_stats,
                               mba_ids=d.mba_ids, bucket_cap_mb=d.bucket_cap_mb or None)
    # the bundle is always the plain single-process model (rank 0's copy when sharded)
    plain = build_experiment_model(config, dataset) if sharded and main else None
    vocab = dataset.vocabularies().to_json_dict()

    def save_best(epoch: int) -> None:
        save_model(plain if plain is not None else model, root / BUNDLE_DIR, vocab=vocab,
                   extra=bundle_extra(config, dataset, epoch, world_size=world))

    records = QuietRecorder if sharded else RunRecorder
    recorder = (records(root, t.monitor if validation else None, t.patience,
                        config.output.checkpoint_every, save_best, log) if main else None)
    callbacks: list[Any] = [PlainSnapshot(model, plain)] if sharded else []
    callbacks += [recorder] if recorder is not None else []
    if sharded:
        callbacks.append(ShardedCheckpoint(root, config.output.checkpoint_every, recorder))
    callbacks += [*extra, StopSync()]
    # Every rank restores the trainer (the same weights and RNG); rank 0 its records too.
    restore = resume_sharded if sharded else resume_or_start
    stopped = restore(trainer, recorder, checkpoint, resume, t.seed, log)
    if not stopped:
        trainer.fit(train, t.epochs, 0, verbose if main else 0, callbacks, validation)
    barrier()  # the best bundle is written
    best = load_model(root / BUNDLE_DIR)
    test = evaluate_shard(best, dataset, "test", t.eval_batch_size, streaming)
    best_epoch, epochs_run = broadcast_object(
        (None if recorder is None or recorder.best_epoch is None else recorder.best_epoch + 1,
         len(recorder.records) if recorder is not None else 0))
    result = RunResult(root, config.output.name, describe_model(config), test,
                              best_epoch, epochs_run, time.perf_counter() - start)
    if main:
        write_result(config, result, log)
    barrier()
    return result
