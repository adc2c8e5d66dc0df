"""RunRecorder: the training callback that keeps a run's records, best model and checkpoints.

At each epoch end it appends the epoch's metrics to metrics.jsonl (with the rows the
training auc / gauc covered: train_metric_rows of train_rows), saves the model bundle
when the monitored validation metric improved, applies early stopping, and checkpoints;
every `checkpoint_every` optimizer steps it checkpoints too. Its own state (epoch records,
best value, patience counter) goes into each checkpoint, so a resumed run makes the same
decisions as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from dinrec.experiment.checkpoint import CHECKPOINT_FILE, save_checkpoint
from dinrec.training.callbacks import Callback

METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"


class RunLog:
    """Timestamped lines appended to <run>/train.log, optionally echoed to a stream."""

    def __init__(self, run_dir: Path, echo: TextIO | None = None) -> None:
        self.path = run_dir / LOG_FILE
        self.echo = echo

    def __call__(self, message: str, echo: bool = True) -> None:
        stamp = datetime.now().isoformat(timespec="seconds")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")
        if echo and self.echo is not None:
            print(message, file=self.echo, flush=True)


def monitor_mode(monitor: str) -> str:
    """'max' for AUC-like metrics, 'min' for losses."""
    return "max" if "auc" in monitor else "min"


class RunRecorder(Callback):
    """Epoch records, best-model selection, early stopping and checkpoints of one run.

    Args:
        run_dir: the run directory.
        monitor: validation metric picking the best epoch (e.g. "val_gauc"); None keeps
            the latest epoch (no validation split).
        patience: epochs without improvement before stopping.
        checkpoint_every: checkpoint every this many steps as well (0: epoch ends only).
        save_best: called with the 0-based epoch when it is the best so far.
        log: where progress lines go.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str | None,
        patience: int,
        checkpoint_every: int,
        save_best: Callable[[int], None],
        log: RunLog,
    ) -> None:
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = monitor_mode(monitor) if monitor else "max"
        self.patience = patience
        self.checkpoint_every = checkpoint_every
        self.save_best = save_best
        self.log = log
        self.records: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped = False
        self._epoch_start = time.perf_counter()

    # ----- state carried by checkpoints ---------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records], "best_value": self.best_value,
                "best_epoch": self.best_epoch, "wait": self.wait, "stopped": self.stopped}

    def load_state(self, state: dict[str, Any]) -> None:
        self.records = [dict(r) for r in state["records"]]
        self.best_value = state["best_value"]
        self.best_epoch = state["best_epoch"]
        self.wait = int(state["wait"])
        self.stopped = bool(state["stopped"])
        # Lines written after the checkpoint belong to work that is about to be redone.
        self._write_records()

    def start_fresh(self) -> None:
        """Empty metrics.jsonl: lines from an attempt killed before its first checkpoint."""
        self.records = []
        self._write_records()

    def checkpoint(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_FILE,
                        {"trainer": self.trainer.state_dict(), "recorder": self.state()})

    # ----- hooks -----------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_batch_end(self, step: int, logs: dict[str, float] | None = None) -> None:
        if self.checkpoint_every and step % self.checkpoint_every == 0:
            self.checkpoint()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = dict(logs or {})
        record: dict[str, Any] = {"epoch": epoch + 1, "step": self.trainer.global_step}
        record.update({k: float(v) for k, v in logs.items()})
        covered = getattr(self.trainer, "last_metric_rows", None)
        if covered is not None:
            # auc / gauc were over train_metric_rows of the epoch's train_rows (a sample of
            # whole users when fewer; Trainer's train_metric_rows cap).
            record["train_metric_rows"], record["train_rows"] = covered
        record["seconds"] = round(time.perf_counter() - self._epoch_start, 3)
        improved = self._improved(logs)
        if improved:
            self.best_value = float(logs[self.monitor]) if self.monitor else None
            self.best_epoch = epoch
            self.wait = 0
            self.save_best(epoch)
        else:
            self.wait += 1
        record["best"] = improved
        self.records.append(record)
        self._append_record(record)
        shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        # The Trainer prints its own epoch line when verbose; this one is for train.log.
        self.log(f"epoch {epoch + 1}: {shown}{' (best)' if improved else ''}", echo=False)
        if self.monitor and not improved and self.wait > self.patience:
            self.stopped = True
            self.trainer.stop_training = True
            self.log(f"early stopping: {self.monitor} did not improve for {self.wait} epochs")
        self.checkpoint()

    def _improved(self, logs: dict[str, float]) -> bool:
        if self.monitor is None:
            return True
        if self.monitor not in logs:
            raise ValueError(f"training.monitor {self.monitor!r} is not among the epoch "
                             f"metrics {sorted(logs)}")
        value = float(logs[self.monitor])
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    # ----- metrics.jsonl ---------------------------------------------------------------
    def _append_record(self, record: dict[str, Any]) -> None:
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _write_records(self) -> None:
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        tmp = self.run_dir / f".{METRICS_FILE}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.run_dir / METRICS_FILE)


def read_records(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The epoch records of a run's metrics.jsonl (empty when there are none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
