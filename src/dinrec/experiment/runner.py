"""run_experiment: one training run from an ExperimentConfig into a run directory.

The run directory holds:

    config.toml     the resolved config (absolute paths), readable by `dinrec train`
    data/           the dataset, when the config builds it from a raw log
    train.log       what happened, with timestamps
    metrics.jsonl   one JSON line per epoch: loss, auc, gauc, logloss, val_* ...
    checkpoint.pt   the latest resume checkpoint (atomic; see checkpoint.py)
    model/          the best epoch's bundle (with the dataset's vocab.json)
    results.json    the test metrics of the best model, written last
    curves.png      training curves (output.plots)

An interrupted run continues with run_experiment(config, run_dir, resume=True) from its last
checkpoint; the epoch order, dropout and MBA state are restored, so it ends with the same
weights and the same test metrics as a run that was never interrupted.

The same run_experiment runs one rank of a torchrun job (call it on every rank):

    torchrun --nproc_per_node 2 -m dinrec train CONFIG.toml --out runs/x

- rank 0 creates the run directory and builds the dataset (if the config builds one); the
  other ranks wait for it, then open it;
- each rank reads only its part of the train and test splits (dinrec.experiment.rank_rows in
  memory, its row groups when streaming); training.batch_size is the global batch;
- rank 0 alone writes train.log, metrics.jsonl, checkpoints, the model bundle, results.json
  and plots, from the plain (unwrapped) model; validation and test scores are gathered from
  every rank, so the metrics cover every row once;
- after a torchrun restart (--max-restarts) the run continues from its last checkpoint: at
  most `output.checkpoint_every` steps are trained again, and none are lost.

In one process every collective is a no-op and the steps are the same but for where the
rows come from (the whole split) and the Trainer, which is not wrapped for DDP.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from dinrec.bundle import save_model
from dinrec.data.dataset import Dataset
from dinrec.experiment.checkpoint import CHECKPOINT_FILE
from dinrec.experiment.config import ConfigError, ExperimentConfig, TrainingConfig
from dinrec.experiment.data_source import prepare_dataset
from dinrec.experiment.rank_rows import evaluate_shard, row_range_sources
from dinrec.experiment.recorder import RunLog, RunRecorder
from dinrec.experiment.run_dir import (
    BUNDLE_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    RESULTS_FILE,
    TEST_METRICS,
    RunResult,
    build_experiment_model,
    bundle_extra,
    describe_model,
    evaluate_source,
    history_behaviors,
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
from dinrec.experiment.split_arrays import SplitArrays, batches, read_split, validation_split
from dinrec.experiment.streaming import split_loader, streamed_train, use_streaming
from dinrec.models import InterestNetwork, load_model
from dinrec.schema import FeatureSchema
from dinrec.training.batches import TensorBatches
from dinrec.training.callbacks import Callback
from dinrec.training.distributed.ddp import wrap_trainer
from dinrec.training.distributed.launch import (
    DistEnv,
    StopSync,
    barrier,
    broadcast_object,
    destroy,
    init_from_env,
    launched_by_torchrun,
    run_main_first,
)
from dinrec.training.distributed.sharding import AgreedBatches

# The run directory's names and steps live in run_dir.py; they are importable from here,
# where a run starts.
__all__ = ["BUNDLE_DIR", "CONFIG_FILE", "CURVES_FILE", "RESULTS_FILE", "TEST_METRICS",
           "RunResult", "build_experiment_model", "bundle_extra", "describe_model",
           "evaluate_arrays", "evaluate_source", "in_memory_train", "prepare_run_dir",
           "read_result", "resolve_device", "resume_or_start", "run_experiment",
           "write_result"]


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    echo: TextIO | None = sys.stdout,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Train, select the best epoch on validation, test it, and write the run directory.

    Under torchrun (several workers) this is one rank's part of a data-parallel run.

    Args:
        config: the experiment.
        run_dir: the run directory (created; must not hold another run unless resuming).
        resume: continue the run in run_dir from its checkpoint (a finished run returns its
            results at once). A torchrun restart resumes by itself.
        overwrite: replace a run already in run_dir (its files only) instead of refusing;
            not under torchrun.
        verbose: 1 shows progress bars (samples/s, ETA) and per-epoch lines; 0 is quiet.
        echo: stream for the log lines (None: only train.log).
        callbacks: more training callbacks, called after the run's recorder (which has
            checkpointed a step when they see it), e.g. a test's fault injection.
    """
    t = config.training
    if not launched_by_torchrun():
        if t.num_threads:
            # Intra-op threads only: the per-batch work is small, so more threads than cores
            # (or than the cores left to other jobs) costs more in synchronisation than it
            # gains.
            torch.set_num_threads(t.num_threads)
        one = DistEnv(device=str(resolve_device(t.device)))
        return _run(config, Path(run_dir), resume, overwrite, verbose, echo, one, callbacks)
    if overwrite:
        # A torchrun restart re-runs the same command: overwriting would delete the
        # checkpoint the restarted workers are meant to continue from.
        raise ValueError("overwrite is not supported under torchrun; remove the run "
                         f"directory {run_dir} first")
    # cuda: nccl and the model on cuda:LOCAL_RANK; cpu: gloo.
    env = init_from_env(device=resolve_device(t.device).type, num_threads=t.num_threads or 1)
    try:
        return _run(config, Path(run_dir), resume, False, verbose, echo, env, callbacks)
    finally:
        destroy()


class _Silent:
    """RunLog's interface for ranks other than 0: they write no log."""

    def __call__(self, message: str, echo: bool = True) -> None:
        return None


def _run(
    config: ExperimentConfig, run_dir: Path, resume: bool, overwrite: bool, verbose: int,
    echo: TextIO | None, env: DistEnv, extra: Sequence[Callback],
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

    changed: list[str] = []

    def setup() -> Dataset:
        if main:
            changed.extend(prepare_run_dir(config, root, resume, overwrite))
        return prepare_dataset(config.data, root, progress=verbose > 0 and main)

    dataset = run_main_first(setup)
    log: Any = RunLog(root, echo if verbose else None) if main else _Silent()
    ranks = f" on {world} ranks ({env.backend})" if env.is_distributed else ""
    log(f"{'resuming' if resume else 'starting'} run {config.output.name!r} in {root}{ranks}; "
        f"dataset {dataset.path} ({dataset.meta.protocol}, "
        f"{dataset.meta.counts['train']['samples']} train samples)")
    if changed:
        log(f"resumed with settings changed from the run's config ({CONFIG_FILE} updated): "
            + "; ".join(changed))
    model = build_experiment_model(config, dataset)
    model.to(env.device)  # in place: the optimizer keeps the same parameters
    streaming, why = use_streaming(config.data, model.schema, dataset)
    log(f"samples {'streamed from Parquet' if streaming else 'loaded in memory'} ({why})")
    train, validation = _train_sources(model.schema, dataset, config, env, streaming, log)
    trainer = model.trainer
    d = config.distributed
    sharded = env.is_distributed and d.embeddings == "torchrec"  # tables sharded (sharded_run)
    if d.embeddings == "torchrec" and not env.is_distributed:
        log("distributed.embeddings = 'torchrec' shards tables across torchrun's ranks; "
            "one process trains them as plain tables")
    if sharded and streaming:
        raise ConfigError("distributed.embeddings = 'torchrec' reads the splits in memory "
                          "(its lookups are collective: every rank needs the same number of "
                          "evaluation batches); set data.streaming = false")
    if sharded:
        trainer = shard_trainer(model.trainer, config, log)
    elif env.is_distributed:
        trainer = wrap_trainer(trainer, sync_dice_stats=d.sync_dice_stats, mba_ids=d.mba_ids,
                               bucket_cap_mb=d.bucket_cap_mb or None)
    # The bundle is always the plain single-process model (rank 0's copy when sharded).
    plain = build_experiment_model(config, dataset) if sharded and main else None
    vocab = dataset.vocabularies().to_json_dict()
    more = {"world_size": world} if env.is_distributed else {}

    def save_best(epoch: int) -> None:
        save_model(plain if plain is not None else model, root / BUNDLE_DIR, vocab=vocab,
                   extra=bundle_extra(config, dataset, epoch, **more),
                   history_behaviors=history_behaviors(model.schema, dataset.meta))

    records = QuietRecorder if sharded else RunRecorder
    recorder = (records(root, t.monitor if validation else None, t.patience,
                        config.output.checkpoint_every, save_best, log) if main else None)
    callbacks: list[Any] = [PlainSnapshot(model, plain)] if sharded else []
    callbacks += [recorder] if recorder is not None else []
    if sharded:
        callbacks.append(ShardedCheckpoint(root, config.output.checkpoint_every, recorder))
    # StopSync last: every rank stops when rank 0's callbacks decide to.
    callbacks += [*extra, StopSync()] if env.is_distributed else extra
    # Every rank restores the trainer (the same weights and RNG); rank 0 its records too.
    restore = resume_sharded if sharded else resume_or_start
    stopped = restore(trainer, recorder, checkpoint, resume, t.seed, log)
    if not stopped:
        trainer.fit(train, t.epochs, 0, verbose if main else 0, callbacks, validation)
    barrier()  # the best bundle is written
    test = _test_metrics(load_model(root / BUNDLE_DIR), dataset, t.eval_batch_size, env,
                         streaming)
    best_epoch, epochs_run = broadcast_object(
        (None if recorder is None or recorder.best_epoch is None else recorder.best_epoch + 1,
         len(recorder.records) if recorder is not None else 0))
    result = RunResult(root, config.output.name, describe_model(config), test, best_epoch,
                       epochs_run, round(time.perf_counter() - start, 3))
    if main:
        write_result(config, result, log)
    barrier()
    return result


def _train_sources(
    schema: FeatureSchema, dataset: Dataset, config: ExperimentConfig, env: DistEnv,
    streaming: bool, log: Any,
) -> tuple[Any, Any]:
    """(train, validation or None): the whole train split in one process; under torchrun
    this rank's row range (in memory) or row groups (r % world == rank, streamed)."""
    t = config.training
    if not env.is_distributed:
        if streaming:
            return streamed_train(schema, dataset, config.data, t)
        return in_memory_train(schema, dataset, t)
    if not streaming:
        return row_range_sources(schema, dataset, t, env, log)
    loader, validation = streamed_train(schema, dataset, config.data, t,
                                        shard=(env.rank, env.world_size))
    log(f"rank {env.rank}: {loader.num_rows} train rows streamed", echo=False)
    # Through a shuffle window the ranks' batch counts differ: AgreedBatches stops them all
    # at the shortest.
    return AgreedBatches(loader), validation


def _test_metrics(
    best: InterestNetwork, dataset: Dataset, size: int, env: DistEnv, streaming: bool
) -> dict[str, float]:
    """The best bundle's test metrics; under torchrun each rank scores its part, gathered."""
    if env.is_distributed:
        return evaluate_shard(best, dataset, "test", size, streaming)
    if streaming:
        return evaluate_source(best, split_loader(best.schema, dataset, "test", size))
    return evaluate_arrays(best, read_split(dataset, "test"), size)


def in_memory_train(
    schema: FeatureSchema, dataset: Dataset, t: TrainingConfig
) -> tuple[TensorBatches, TensorBatches | None]:
    """(train, validation or None) of the train split loaded whole as tensors."""
    train_arrays = read_split(dataset, "train")
    if len(train_arrays) == 0:
        raise ValueError(f"dataset {dataset.path} has no training samples (see its "
                         "dataset.json counts); the log is too small for its protocol")
    validation = None
    if t.validation_fraction > 0:
        train_arrays, val_arrays = validation_split(train_arrays, t.validation_fraction)
        validation = batches(schema, val_arrays, t.eval_batch_size, False, t.seed)
    return batches(schema, train_arrays, t.batch_size, True, t.seed), validation


def evaluate_arrays(
    model: InterestNetwork, arrays: SplitArrays, batch_size: int
) -> dict[str, float]:
    """{"auc", "gauc", "logloss"} of a model on SplitArrays, grouped by user_key."""
    return evaluate_source(model, batches(model.schema, arrays, batch_size, False, 0))
