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
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import torch

from dinrec.bundle import save_model
from dinrec.data.dataset import Dataset
from dinrec.experiment.checkpoint import CHECKPOINT_FILE
from dinrec.experiment.config import ExperimentConfig, TrainingConfig
from dinrec.experiment.data_source import prepare_dataset
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
    prepare_run_dir,
    read_result,
    resolve_device,
    resume_or_start,
    write_result,
)
from dinrec.experiment.split_arrays import SplitArrays, batches, read_split, validation_split
from dinrec.experiment.streaming import split_loader, streamed_train, use_streaming
from dinrec.models import InterestNetwork, load_model
from dinrec.schema import FeatureSchema
from dinrec.training.batches import TensorBatches
from dinrec.training.callbacks import Callback
from dinrec.training.trainer import Trainer

# The run directory's names and steps live in run_dir.py (shared with distributed_run.py);
# they are importable from here, where a run starts.
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

    Args:
        config: the experiment.
        run_dir: the run directory (created; must not hold another run unless resuming).
        resume: continue the run in run_dir from its checkpoint (a finished run returns its
            results at once).
        overwrite: replace a run already in run_dir (its files only) instead of refusing.
        verbose: 1 shows progress bars (samples/s, ETA) and per-epoch lines; 0 is quiet.
        echo: stream for the log lines (None: only train.log).
        callbacks: more training callbacks, called after the run's recorder (which has
            checkpointed a step when they see it), e.g. a test's fault injection.
    """
    from dinrec.training.distributed.launch import launched_by_torchrun

    if launched_by_torchrun():  # one of several torchrun workers: data-parallel training
        from dinrec.experiment.distributed_run import run_distributed

        if overwrite:
            # A torchrun restart re-runs the same command: overwriting would delete the
            # checkpoint the restarted workers are meant to continue from.
            raise ValueError("overwrite is not supported under torchrun; remove the run "
                             f"directory {run_dir} first")
        return run_distributed(config, run_dir, resume=resume, verbose=verbose, echo=echo,
                               callbacks=callbacks)
    start = time.perf_counter()
    root = Path(run_dir).resolve()
    config = config.replace(output=dataclasses.replace(config.output, dir=str(root)))
    prepare_run_dir(config, root, resume, overwrite)
    if resume and (root / RESULTS_FILE).is_file():
        return read_result(root)
    log = RunLog(root, echo if verbose else None)
    if config.training.num_threads:
        # Intra-op threads only: the per-batch work is small, so more threads than cores
        # (or than the cores left to other jobs) costs more in synchronisation than it gains.
        torch.set_num_threads(config.training.num_threads)
    dataset = prepare_dataset(config.data, root, progress=verbose > 0)
    log(f"{'resuming' if resume else 'starting'} run {config.output.name!r} in {root}; "
        f"dataset {dataset.path} ({dataset.meta.protocol}, "
        f"{dataset.meta.counts['train']['samples']} train samples)")
    t = config.training
    model = build_experiment_model(config, dataset)
    model.to(resolve_device(t.device))  # in place: the optimizer keeps the same parameters
    streaming, why = use_streaming(config.data, model.schema, dataset)
    log(f"samples {'streamed from Parquet' if streaming else 'loaded in memory'} ({why})")
    train, validation = (streamed_train(model.schema, dataset, config.data, t) if streaming
                         else in_memory_train(model.schema, dataset, t))
    vocab = dataset.vocabularies().to_json_dict()

    def save_best(epoch: int) -> None:
        save_model(model, root / BUNDLE_DIR, vocab=vocab,
                   extra=bundle_extra(config, dataset, epoch))

    recorder = RunRecorder(root, t.monitor if validation else None, t.patience,
                           config.output.checkpoint_every, save_best, log)
    trainer: Trainer = model.trainer
    stopped = resume_or_start(trainer, recorder, root / CHECKPOINT_FILE, resume, t.seed, log)
    if not stopped:
        trainer.fit(train, t.epochs, 0, verbose, [recorder, *callbacks], validation)
    result = _test_best(config, root, dataset, recorder, start, streaming)
    write_result(config, result, log)
    return result


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


def _test_best(
    config: ExperimentConfig, root: Path, dataset: Dataset, recorder: RunRecorder, start: float,
    streaming: bool,
) -> RunResult:
    """The result of the run: the best bundle's test metrics."""
    best = load_model(root / BUNDLE_DIR)
    size = config.training.eval_batch_size
    test = (evaluate_source(best, split_loader(best.schema, dataset, "test", size))
            if streaming else evaluate_arrays(best, read_split(dataset, "test"), size))
    best_epoch = recorder.best_epoch + 1 if recorder.best_epoch is not None else None
    return RunResult(root, config.output.name, describe_model(config), test, best_epoch,
                     len(recorder.records), round(time.perf_counter() - start, 3))


def evaluate_arrays(
    model: InterestNetwork, arrays: SplitArrays, batch_size: int
) -> dict[str, float]:
    """{"auc", "gauc", "logloss"} of a model on SplitArrays, grouped by user_key."""
    return evaluate_source(model, batches(model.schema, arrays, batch_size, False, 0))
