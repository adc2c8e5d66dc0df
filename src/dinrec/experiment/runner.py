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
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from dinrec.bundle import load_model, save_model
from dinrec.data.dataset import Dataset, feature_columns
from dinrec.data.protocols_samples import USER_KEY
from dinrec.errors import OutputExistsError
from dinrec.experiment.checkpoint import CHECKPOINT_FILE, load_checkpoint
from dinrec.experiment.config import ExperimentConfig, TrainingConfig, dump_config
from dinrec.experiment.data_match import DATA_KEY, recorded_protocol
from dinrec.experiment.data_source import prepare_dataset
from dinrec.experiment.outputs import RUN_ENTRIES, remove_entries
from dinrec.experiment.recorder import RunLog, RunRecorder, read_records
from dinrec.experiment.streaming import split_loader, streamed_train, use_streaming
from dinrec.experiment.tensors import SplitArrays, batches, read_split, validation_split
from dinrec.models import InterestNetwork, build_model
from dinrec.schema import FeatureSchema
from dinrec.training.batches import BatchSource, TensorBatches
from dinrec.training.trainer import Trainer

CONFIG_FILE = "config.toml"
RESULTS_FILE = "results.json"
BUNDLE_DIR = "model"
CURVES_FILE = "curves.png"
TEST_METRICS = ("auc", "gauc", "logloss")


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports (also stored as results.json).

    Args:
        run_dir: the run directory.
        name: output.name of the run.
        model: a short description of the model (class and activations).
        test: {"auc", "gauc", "logloss"} of the best model on the test split.
        best_epoch: 1-based epoch whose weights are in model/.
        epochs_run: epochs trained.
        seconds: wall time of this process's part of the run.
    """

    run_dir: Path
    name: str
    model: str
    test: dict[str, float]
    best_epoch: int | None
    epochs_run: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "name": self.name, "model": self.model,
                "test": self.test, "best_epoch": self.best_epoch,
                "epochs_run": self.epochs_run, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(Path(data["run_dir"]), str(data["name"]), str(data["model"]),
                   {k: float(v) for k, v in data["test"].items()}, data["best_epoch"],
                   int(data["epochs_run"]), float(data["seconds"]))


def describe_model(config: ExperimentConfig) -> str:
    """e.g. 'DIN (att dice, dnn dice, mba)' or 'EmbeddingMLP (sum, dnn prelu)'."""
    net = config.model.network
    parts = ([f"att {net.att_activation}"] if net.model == "DIN" else [net.history_pooling])
    parts.append(f"dnn {net.dnn_activation}")
    if net.embedding_regularization == "mba":
        parts.append("mba")
    return f"{net.model} ({', '.join(parts)})"


def read_result(run_dir: str | os.PathLike[str]) -> RunResult:
    """The results.json of a finished run; a run without one raises naming it."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {RESULTS_FILE}: not a finished run "
                                "(an interrupted one can be resumed)")
    return RunResult.from_dict(json.loads(path.read_text(encoding="utf-8")))


def build_experiment_model(config: ExperimentConfig, dataset: Dataset) -> Any:
    """The configured DIN / EmbeddingMLP for a dataset's feature columns, compiled."""
    columns, history = feature_columns(dataset, config.model.embedding_dim,
                                       use_profile=config.model.use_profile)
    model = build_model(FeatureSchema.resolve(columns, history), config.model.network)
    t = config.training
    if t.compile_dense:
        model.compile_dense()
    if t.attention_bf16:
        model.attention_bf16()  # stays fp32 (returns False) where the CPU lacks native bf16
    model.compile(t.optimizer, "binary_crossentropy", list(TEST_METRICS), lr=t.learning_rate,
                  gauc_group=USER_KEY, train_metric_rows=t.train_metric_rows or None)
    return model


def resolve_device(name: str) -> torch.device:
    """training.device as a torch.device: "auto" is cuda when torch sees one, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError('training.device = "cuda" but torch sees no CUDA device; use "cpu" '
                         'or "auto"')
    return torch.device(name)


def bundle_extra(
    config: ExperimentConfig, dataset: Dataset, epoch: int, **more: Any
) -> dict[str, Any]:
    """The manifest "extra" of a run's bundle: run, 1-based epoch, the config, the dataset
    and how its samples were built (so evaluating on other data can say what differs)."""
    return {"run": config.output.name, "epoch": epoch + 1, "dataset": str(dataset.path),
            "config": config.to_dict(), DATA_KEY: recorded_protocol(dataset.meta), **more}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prepare_run_dir(
    config: ExperimentConfig, run_dir: Path, resume: bool, overwrite: bool = False
) -> None:
    """Create or check the run directory; a fresh run replaces another run only with
    overwrite=True (and then only the files a run writes)."""
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory ({CONFIG_FILE} missing)")
        for stale in run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            stale.unlink()  # a checkpoint write the kill interrupted; the last one is intact
        return
    if (run_dir / CHECKPOINT_FILE).exists() or (run_dir / RESULTS_FILE).exists():
        if not overwrite:
            raise OutputExistsError(
                f"run directory {run_dir} already holds a run; {{resume}}, pass "
                "{overwrite} to replace it, or choose another {out}",
                resume=("continue it with resume=True",
                        f"continue it with `dinrec train --resume {run_dir}`"),
                out=("run_dir", "--out / output.dir"))
        remove_entries(run_dir, RUN_ENTRIES)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")


def resume_or_start(
    trainer: Trainer, recorder: RunRecorder | None, checkpoint: Path, resume: bool, seed: int,
    log: Callable[[str], None],
) -> bool:
    """Continue from the run's checkpoint, or start the training state fresh.

    Args:
        trainer: restored from the checkpoint (weights, optimizer, RNG, epoch position).
        recorder: restored too, or emptied on a fresh start; None on the ranks of a
            distributed run that keep no records (all but rank 0).
        checkpoint: the run's checkpoint file; resuming without one starts fresh.
        seed: training.seed, seeding dropout on a fresh start.

    Returns:
        Whether the checkpointed run had already stopped early (nothing left to train).
    """
    if resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        trainer.load_state_dict(state["trainer"])
        if recorder is not None:
            recorder.load_state(state["recorder"])
        log(f"resumed from step {trainer.global_step} (epoch {trainer.progress.epoch + 1}, "
            f"batch {trainer.progress.batches_done})")
        return bool(state["recorder"]["stopped"])
    if recorder is not None:
        recorder.start_fresh()  # drop records of an attempt killed before its 1st checkpoint
    torch.manual_seed(seed)  # dropout (the same stream on every rank); model.seed sets weights
    return False


def write_result(config: ExperimentConfig, result: RunResult, log: Callable[[str], None]) -> None:
    """Finish the run directory: results.json (atomically, and last but for the plots: it
    marks the run finished), the test line in train.log, and curves.png (output.plots)."""
    _write_json(result.run_dir / RESULTS_FILE, result.to_dict())
    shown = " ".join(f"{k}={v:.4f}" for k, v in result.test.items())
    log(f"test (best epoch {result.best_epoch}): {shown}")
    if config.output.plots:
        from dinrec.experiment.plots import plot_training_curves

        plot_training_curves({config.output.name: read_records(result.run_dir)},
                             result.run_dir / CURVES_FILE)


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    echo: TextIO | None = sys.stdout,
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
    """
    from dinrec.training.distributed import launched_by_torchrun

    if launched_by_torchrun():  # one of several torchrun workers: data-parallel training
        from dinrec.training.distributed_run import run_distributed

        if overwrite:
            # A torchrun restart re-runs the same command: overwriting would delete the
            # checkpoint the restarted workers are meant to continue from.
            raise ValueError("overwrite is not supported under torchrun; remove the run "
                             f"directory {run_dir} first")
        return run_distributed(config, run_dir, resume=resume, verbose=verbose, echo=echo)
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
        trainer.fit(train, t.epochs, 0, verbose, [recorder], validation)
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


def evaluate_source(model: InterestNetwork, source: BatchSource) -> dict[str, float]:
    """{"auc", "gauc", "logloss"} of a model over a batch source holding user_key."""
    trainer = Trainer(model, "adam", metrics=["auc", "gauc"], group_column=USER_KEY)
    scores = trainer.evaluate(source)
    return {"auc": scores["auc"], "gauc": scores["gauc"], "logloss": scores["loss"]}
