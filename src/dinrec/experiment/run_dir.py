"""The run directory and the steps of a run that both runners share (in-process, torchrun).

The files a run writes (see dinrec.experiment.runner), RunResult (results.json), the model
a config builds, and starting, resuming and finishing a run directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dinrec.data.dataset import Dataset, DatasetMeta, feature_columns
from dinrec.data.protocols.samples import USER_KEY
from dinrec.errors import OutputExistsError
from dinrec.experiment.checkpoint import CHECKPOINT_FILE, load_checkpoint
from dinrec.experiment.config import ConfigError, ExperimentConfig, dump_config, load_config
from dinrec.experiment.data_match import DATA_KEY, recorded_protocol
from dinrec.experiment.outputs import RUN_ENTRIES, remove_entries
from dinrec.experiment.recorder import RunRecorder, read_records
from dinrec.metrics import resolve_metrics
from dinrec.models import build_model
from dinrec.schema import FeatureSchema
from dinrec.training.batches import BatchSource
from dinrec.training.evaluation import GatherScores, evaluate_model
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
    """The configured DIN / EmbeddingMLP for a dataset's feature columns, compiled.

    The history groups come from the dataset (dataset.json), model.history_groups picks
    some of them; each is attended over the same features as DeepCTR's history list.
    """
    m, meta = config.model, dataset.meta
    groups = list(meta.history_groups) if m.history_groups is None else list(m.history_groups)
    unknown = [g for g in groups if g not in meta.history_groups]
    if unknown:
        raise ConfigError(f"model.history_groups: group {unknown[0]!r} is not in dataset "
                          f"{dataset.path}; it has {sorted(meta.history_groups) or 'none'}")
    columns, history = feature_columns(dataset, m.embedding_dim, use_profile=m.use_profile,
                                       groups=groups,
                                       time_gap=m.use_time_gap and meta.history_time_gap)
    schema = FeatureSchema.resolve(columns, history,
                                   history_groups={g: history for g in groups} or None)
    model = build_model(schema, config.model.network)
    t = config.training
    if t.compile_dense:
        model.compile_dense()
    if t.attention_bf16:
        model.attention_bf16()  # stays fp32 (returns False) where the CPU lacks native bf16
    model.compile(t.optimizer, "binary_crossentropy", list(TEST_METRICS), lr=t.learning_rate,
                  gauc_group=USER_KEY, train_metric_rows=t.train_metric_rows or None,
                  ema_momentum=t.ema_momentum or None)
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


def history_behaviors(schema: FeatureSchema, meta: DatasetMeta) -> dict[str, list[str]] | None:
    """The behavior types feeding each of the model's histories, for serving to route typed
    events ('' is history_feature_list's: the types the samples were built from), or None
    when the dataset was built from untyped events."""
    names = {group.name for group in schema.groups}
    found = {g: list(types) for g, types in meta.history_groups.items() if g in names}
    if meta.sample_behaviors is not None:
        found[""] = list(meta.sample_behaviors)
    return found or None


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Atomically: a rank reading the file meanwhile sees the old text or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def prepare_run_dir(
    config: ExperimentConfig, run_dir: Path, resume: bool, overwrite: bool = False
) -> list[str]:
    """Create or check the run directory; a fresh run replaces another run only with
    overwrite=True (and then only the files a run writes).

    Returns the settings a resumed run changes (changed_settings; config.toml is rewritten
    with them), [] for a fresh run."""
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory ({CONFIG_FILE} missing)")
        for stale in run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            stale.unlink()  # a checkpoint write the kill interrupted; the last one is intact
        changed = changed_settings(run_dir, config)
        if changed:  # e.g. `--resume --set distributed.embeddings=...`: the next resume keeps it
            _write_text(run_dir / CONFIG_FILE, dump_config(config))
        return changed
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
    return []


def changed_settings(run_dir: Path, config: ExperimentConfig) -> list[str]:
    """'section.key: saved -> now' for each setting `config` changes in the run's saved
    config (output.dir aside: a moved run directory is the same run)."""
    saved = load_config(run_dir / CONFIG_FILE).to_dict()
    now = config.to_dict()
    out = []
    for section in sorted(set(saved) | set(now)):
        old, new = saved.get(section, {}), now.get(section, {})
        for key in sorted(set(old) | set(new)):
            if (section, key) != ("output", "dir") and old.get(key) != new.get(key):
                out.append(f"{section}.{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out


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
        if "sharded" in state:  # written by a TorchRec run's ranks (sharded_run.py)
            from dinrec.training.distributed.sharded_checkpoint import load_sharded

            load_sharded(checkpoint.parent / state["sharded"], trainer, state["trainer"])
            log("resumed the tables from a sharded checkpoint (their optimizer state restarts)")
        else:
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


def evaluate_source(
    model: Any, source: BatchSource, gather: GatherScores | None = None
) -> dict[str, float]:
    """{"auc", "gauc", "logloss"} of a model over a batch source holding user_key.

    Args:
        gather: under torchrun, the gather of every rank's scores (the Trainer's
            gather_scores hook), so the metrics cover each row once; None in one process.
    """
    scores = evaluate_model(model, source, resolve_metrics(["auc", "gauc"]), USER_KEY, gather)
    return {"auc": scores["auc"], "gauc": scores["gauc"], "logloss": scores["loss"]}
