"""Keras-named callbacks (EarlyStopping, ModelCheckpoint) and the History fit returns."""

from __future__ import annotations

import copy
import math
import warnings
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dinrec.training.trainer import Trainer


class Callback:
    """Base class: hooks called by the Trainer; `self.trainer` is set before training."""

    trainer: Trainer

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called at the start of each epoch (0-based)."""

    def on_batch_end(self, step: int, logs: dict[str, float] | None = None) -> None:
        """Called after each optimizer step (step counts from 1 over the whole run)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called after each epoch with its metrics (loss, metrics, val_*)."""

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        """Called once after training."""


class History(Callback):
    """Per-epoch metrics: `history` maps 'loss', each metric and 'val_*' to lists."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _resolve_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if any(k in monitor for k in ("auc", "acc")) else "min"


class _Monitor:
    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        self.min_delta = abs(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def current(self, logs: dict[str, float] | None) -> float | None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"monitored metric {self.monitor!r} is not available; available: "
                f"{sorted(logs or {})}",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return float(value)

    def improved(self, value: float) -> bool:
        return self.improved_on(value, self.best)

    def improved_on(self, value: float, reference: float) -> bool:
        """Whether `value` beats `reference` by more than min_delta (NaN never does)."""
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs (Keras' rules).

    Each watched epoch adds one to `wait`; an improvement (by more than min_delta) records
    the best value and epoch and, when it also beats `baseline`, resets `wait` to 0. An
    epoch that does not improve stops training when wait >= patience (never the first
    epoch). So patience=0 and patience=1 both stop at the first epoch that does not
    improve, patience=2 at the second in a row. With a baseline, epochs that improve but
    do not beat it keep counting, so the first non-improving epoch after `patience` epochs
    without beating the baseline stops training. These are Keras 3's rules.

    Args:
        monitor: a key of the epoch logs, e.g. 'val_loss' or 'val_auc'.
        min_delta: an improvement must beat the best value by more than this (as Keras,
            the comparison is strict: min mode needs value < best - min_delta).
        patience: epochs without improvement before stopping.
        mode: 'min', 'max' or 'auto' (max for auc/accuracy, else min).
        baseline: a value the monitor must beat for `wait` to reset (None: any
            improvement resets it).
        restore_best_weights: load the best epoch's weights when training ends, whether it
            stopped early or ran all epochs (as Keras 3; TF-Keras 2 restores only when it
            stops early).
        start_from_epoch: epochs to let pass before watching (warm-up).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> float:
        return self._monitor.best

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self.best_weights = None
        self._monitor.best = math.inf if self._monitor.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        value = self._monitor.current(logs)
        if value is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._monitor.improved(value):
            self._monitor.best = value
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(self.trainer.model.state_dict())
            if self.baseline is None or self._monitor.improved_on(value, self.baseline):
                self.wait = 0
            return
        # Keras never stops at the first epoch (epoch > 0), even with patience=0.
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping")

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{(self.best_epoch or 0) + 1}.")
            self.trainer.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (a dinrec bundle directory) after epochs.

    Args:
        filepath: directory path; may hold format fields such as '{epoch:02d}' or
            '{val_auc:.4f}' filled from the epoch logs (epoch is 1-based as in Keras).
        monitor: metric compared when save_best_only.
        save_best_only: only save when `monitor` improves.
        mode: 'min', 'max' or 'auto'.
    """

    def __init__(
        self,
        filepath: str,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        mode: str = "auto",
    ) -> None:
        self.filepath = str(filepath)
        self._monitor = _Monitor(monitor, mode)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.saved: list[str] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            value = self._monitor.current(logs)
            if value is None or not self._monitor.improved(value):
                return
            self._monitor.best = value
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as err:
            raise ValueError(
                f"ModelCheckpoint filepath {self.filepath!r} names {err}, which is not in "
                f"the epoch logs {sorted(logs)}"
            ) from None
        from dinrec.bundle import save_model

        save_model(self.trainer.model, path)
        self.saved.append(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")
