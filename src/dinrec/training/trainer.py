"""Trainer: the training loop behind model.fit / evaluate / predict.

Loss is BCEWithLogits on the model's logits (no sigmoid in the model) plus the configured
regularization. Metrics are computed once per epoch over all of the epoch's predictions,
never averaged over batches, so a one-class batch cannot crash or skew them. A training
epoch longer than the Trainer's train_metric_rows computes its AUC / GAUC over a uniform
sample of that many rows (loss, logloss and accuracy stay over every row), in bounded memory;
validation and test metrics are always over every row.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from dinrec.layers.embedding import dense_tables, sparse_parameters
from dinrec.metrics import Metric, resolve_metrics
from dinrec.training.allocator import (
    dense_table_warning,
    grow_adaptive_thresholds,
    memory_retained,
    retain_freed_memory,
)
from dinrec.training.batches import Batch, epoch_batches, module_device, source_rows, to_device
from dinrec.training.callbacks import Callback, History
from dinrec.training.epoch_metrics import DEFAULT_CAP, EpochRows
from dinrec.training.evaluation import GatherScores, evaluate_model, score_source
from dinrec.training.optimizers import make_optimizer
from dinrec.training.regularization import Regularizer, count_frequencies
from dinrec.training.weight_average import (
    DEFAULT_MOMENTUM,
    WeightAverage,
    dense_parameters,
    table_weights,
)

if TYPE_CHECKING:  # the models package imports the trainer (Keras facade)
    from dinrec.models.network import InterestNetwork

LOSSES = ("binary_crossentropy", "logloss", "bce")
Source = Iterable[tuple[Batch, torch.Tensor]]


@dataclass
class EpochProgress:
    """Where training is inside an epoch, and the epoch's running sums (for exact resume).

    metric_rows holds the rows the epoch's metrics are computed from: every row up to the
    Trainer's train_metric_rows, a uniform sample beyond (see EpochRows).
    """

    epoch: int
    batches_done: int = 0
    loss_sum: float = 0.0
    rows: int = 0
    metric_rows: EpochRows = field(default_factory=lambda: EpochRows(None))


def default_group_column(model: InterestNetwork) -> str | None:
    """The column GAUC groups by when none is named: user_id, then user, then uid."""
    names = {c.name for c in model.schema.sparse}
    for candidate in ("user_id", "user", "uid", "userid"):
        if candidate in names:
            return candidate
    return None


class Trainer:
    """Fits an InterestNetwork on batch sources; evaluation gathers every score first.

    A training epoch's metrics are over all of its rows up to train_metric_rows rows; beyond
    that, AUC and GAUC are computed over a uniform sample of train_metric_rows rows (whole
    users when the rows carry the GAUC group; a function of the model's seed and the epoch,
    not of torch's RNG) while loss, logloss and accuracy stay exact over every
    row (see dinrec.training.epoch_metrics), so their memory does not grow with the data.
    Validation and test metrics (evaluate) are always over every row.

    Args:
        model: the network (pure nn.Module returning logits).
        optimizer: a name ('adam', 'adagrad', 'sgd', 'rmsprop') or a torch optimizer.
        loss: 'binary_crossentropy' (alias 'logloss'); BCEWithLogits on logits.
        metrics: metric names (see dinrec.metrics); unknown names raise.
        group_column: input GAUC groups by (default: user_id / user / uid when present).
        lr: learning rate for a named optimizer (Keras defaults otherwise).
        retain_memory: also fix glibc's mmap and trim thresholds for the whole process
            (mallopt; dinrec.training.allocator), for steps with blocks over the 31 MiB
            that glibc's adaptive thresholds keep in the heap. Without it (the default)
            the Trainer only lets those adaptive thresholds learn a step's block sizes,
            which keeps ml100k's steps free of page faults and sets nothing process-wide;
            a RuntimeWarning names any dense-gradient table over 31 MiB (e.g. 1M rows x
            16), whose steps fault their buffers in anew.
        train_metric_rows: the most rows of a training epoch its AUC / GAUC are computed
            over (a uniform sample beyond; default 1,000,000); None: every row, memory
            growing with the epoch.
        ema_momentum: average the weights over the steps with this momentum (tables per
            row; dinrec.training.weight_average); evaluate, predict, callbacks and saved
            bundles see the average, training continues from the raw weights. None: off.
    """

    def __init__(
        self,
        model: InterestNetwork,
        optimizer: Any = "adam",
        loss: str = "binary_crossentropy",
        metrics: Sequence[str] | None = None,
        group_column: str | None = None,
        lr: float | None = None,
        retain_memory: bool = False,
        train_metric_rows: int | None = DEFAULT_CAP,
        ema_momentum: float | None = DEFAULT_MOMENTUM,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {list(LOSSES)}")
        if isinstance(metrics, str):
            metrics = [metrics]
        if train_metric_rows is not None and train_metric_rows < 1:
            raise ValueError(f"train_metric_rows must be >= 1 or None (every row), got "
                             f"{train_metric_rows}")
        grow_adaptive_thresholds()
        if retain_memory:
            retain_freed_memory()
        elif not memory_retained():  # `dinrec train` set them for the process
            tables = {n: w.numel() * w.element_size() for n, w in dense_tables(model).items()}
            message = dense_table_warning(tables)
            if message is not None:
                warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.model = model
        self.optimizer = make_optimizer(optimizer, model.parameters(), lr,
                                        sparse_parameters(model).values())
        self.metrics: list[Metric] = resolve_metrics(list(metrics or []))
        self.group_column = group_column or default_group_column(model)
        if any(m.needs_groups for m in self.metrics) and self.group_column is None:
            sparse = sorted(c.name for c in model.schema.sparse)
            raise ValueError(
                "metric 'gauc' groups by a user column, and none of the SparseFeats "
                f"{sparse} is named user_id/user/uid; pass gauc_group=... to compile"
            )
        self.train_metric_rows = train_metric_rows
        self.averaging = (WeightAverage(dense_parameters(model), ema_momentum,
                                        tables=table_weights(model))
                          if ema_momentum is not None else None)
        self.regularizer: Regularizer | None = None
        self.stop_training = False
        self.global_step = 0
        self.progress = self._new_progress(0)
        # (rows the last training epoch's AUC / GAUC covered, rows it had): equal unless
        # the epoch passed train_metric_rows; the run's metrics.jsonl records both.
        self.last_metric_rows: tuple[int, int] | None = None
        self._resuming = False
        # torch.distributed hooks, set by dinrec.training.distributed.ddp.wrap_trainer:
        # the training forward runs through forward_module (a DDP wrapper of model), MBA's
        # ids and the rows lazily averaged tables catch up are widened to every rank's
        # batch, evaluation scores are gathered from ranks.
        self.forward_module: torch.nn.Module = model
        self.regularizer_ids: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None
        self.regularizer_ids = None
        self.gather_scores: GatherScores | None = None

    # ----- training ----------------------------------------------------------------------
    def prepare_regularizer(self, train: Source) -> None:
        """Count id frequencies for MBA (one pass over the training data) and build it."""
        freqs = None
        if self.model.config.embedding_regularization == "mba":
            # A sharded source counts the whole dataset over all ranks (id_frequencies).
            counter = getattr(train, "id_frequencies", None)
            freqs = (counter(self.model) if callable(counter)
                     else count_frequencies(self.model, epoch_batches(train, 0)))
            device = module_device(self.model)  # counted from host batches
            freqs = {name: n.to(device) for name, n in freqs.items()}
        self.regularizer = Regularizer(self.model, freqs, ids_hook=self.regularizer_ids)

    def train_step(self, feats: Batch, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (total loss, logits [B]) detached."""
        assert self.regularizer is not None
        logits = self.forward_module(feats).squeeze(-1)  # [B]
        total = F.binary_cross_entropy_with_logits(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        # Every penalty (full-table L2, MBA, DNN L2) adds its gradient directly, without an
        # autograd graph per table (every rank holds the same weights and, for MBA, the same
        # union of ids, so under DDP this equals the reduced gradient).
        lazy = self.averaging is not None and bool(self.averaging.tables)
        # The batch's ids per table, under DDP the union over every rank's batch (one
        # exchange a step, shared): MBA penalises them and lazily averaged tables catch
        # their rows up (a row moves when any rank's batch uses it).
        ids = self.regularizer.penalised_ids(feats) if lazy else None
        direct = self.regularizer.add_direct_gradients(feats, ids)
        if lazy:
            assert self.averaging is not None and ids is not None
            self.averaging.before_step(ids)  # rows about to move
        self.optimizer.step()
        if self.averaging is not None:
            self.averaging.update()
        self.global_step += 1
        return total.detach() + direct, logits.detach()

    def fit(
        self,
        train: Source,
        epochs: int = 1,
        initial_epoch: int = 0,
        verbose: int = 1,
        callbacks: Sequence[Callback] | None = None,
        validation: Source | None = None,
    ) -> History:
        """Train for epochs [initial_epoch, epochs); returns the History.

        After load_state_dict(checkpoint), fit continues from the checkpoint's epoch and
        batch: the batches already done in that epoch are skipped (each epoch's order is a
        function of (seed, epoch)), so an interrupted run ends with the same weights.
        """
        history = History()
        cbs: list[Callback] = [*(callbacks or []), history]
        for cb in cbs:
            cb.set_trainer(self)
        history.params = {"epochs": epochs, "steps": _len_or_none(train), "verbose": verbose}
        if self.regularizer is None or not self._resuming:
            self.prepare_regularizer(train)
        self.stop_training = False
        start_epoch = self.progress.epoch if self._resuming else initial_epoch
        for cb in cbs:
            cb.on_train_begin()
        for epoch in range(start_epoch, epochs):
            if not self._resuming:
                self.progress = self._new_progress(epoch)
            self._resuming = False
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            start = time.perf_counter()
            logs = self._train_epoch(train, epochs, verbose, cbs)
            if validation is not None:
                val = self.evaluate(validation)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if verbose:
                took = time.perf_counter() - start
                line = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
                print(f"Epoch {epoch + 1}/{epochs} - {took:.1f}s - {line}", flush=True)
            self.progress = self._new_progress(epoch + 1)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history

    def _train_epoch(
        self, train: Source, epochs: int, verbose: int, cbs: Sequence[Callback]
    ) -> dict[str, float]:
        self.model.train()
        if self.averaging is not None:
            self.averaging.use_raw()
        prog = self.progress
        skip = prog.batches_done
        bar = _progress(verbose == 1, source_rows(train), f"Epoch {prog.epoch + 1}/{epochs}")
        device = module_device(self.model)
        for index, (feats, labels) in enumerate(epoch_batches(train, prog.epoch)):
            if index < skip:  # already trained before the checkpoint this run resumed from
                continue
            feats, labels = to_device(feats, labels, device)
            loss, logits = self.train_step(feats, labels)
            rows = int(labels.shape[0])
            prog.loss_sum += float(loss) * rows
            prog.rows += rows
            prog.batches_done = index + 1
            if self.metrics:
                group = feats.get(self.group_column) if self.group_column is not None else None
                prog.metric_rows.append(logits, labels, group)
            if bar is not None:
                bar.update(rows)
                bar.set_postfix(loss=f"{prog.loss_sum / prog.rows:.4f}", refresh=False)
            for cb in cbs:
                cb.on_batch_end(self.global_step, {"loss": float(loss)})
            if self.stop_training:
                break
        if bar is not None:
            bar.close()
        if self.averaging is not None:  # validation, callbacks and saving see the average
            self.averaging.use_average()
        if prog.rows == 0:
            raise ValueError("the training data yielded no batches")
        logs = {"loss": prog.loss_sum / prog.rows}
        if self.metrics:
            logs.update(prog.metric_rows.compute())
            held = prog.metric_rows
            self.last_metric_rows = (min(held.rows, held.cap or held.rows), held.rows)
        return logs

    def _new_progress(self, epoch: int) -> EpochProgress:
        seed = int(getattr(getattr(self.model, "config", None), "seed", 0))
        return EpochProgress(epoch=epoch, metric_rows=EpochRows(
            self.train_metric_rows, seed=seed, epoch=epoch, metrics=self.metrics))

    # ----- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, optimizer, step, epoch position,
        the epoch's running sums, id frequencies (MBA) and the torch RNG state."""
        prog = self.progress
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "global_step": self.global_step,
            "epoch": prog.epoch,
            "batches_done": prog.batches_done,
            "loss_sum": prog.loss_sum,
            "rows": prog.rows,
            "metric_rows": prog.metric_rows.state_dict(),
            "frequencies": (
                dict(self.regularizer.frequencies) if self.regularizer is not None else None
            ),
            "rng": torch.get_rng_state(),
            "weight_average": (
                self.averaging.state_dict() if self.averaging is not None else None
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict(); the next fit() continues where it was taken."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["global_step"])
        self.progress = self._new_progress(int(state["epoch"]))
        self.progress.batches_done = int(state["batches_done"])
        self.progress.loss_sum = float(state["loss_sum"])
        self.progress.rows = int(state["rows"])
        # Checkpoints from before the row cap hold the epoch's rows as scores/labels/groups.
        metric_rows = state.get("metric_rows") or {
            "rows": len(state["scores"]) if state.get("scores") is not None else 0,
            **{k: state.get(k) for k in ("scores", "labels", "groups")}}
        self.progress.metric_rows.load_state_dict(metric_rows)
        freqs = state.get("frequencies")
        self.regularizer = (Regularizer(self.model, freqs, ids_hook=self.regularizer_ids)
                            if freqs is not None else None)
        torch.set_rng_state(state["rng"])
        average = state.get("weight_average")
        if self.averaging is not None and average is not None:
            self.averaging.load_state_dict(average)
        elif self.averaging is not None:  # a checkpoint trained without averaging
            self.averaging.reset()
        self._resuming = True

    # ----- evaluation --------------------------------------------------------------------
    def scores(self, source: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(probabilities [N], labels [N], groups [N] or None) in eval + inference mode."""
        return score_source(self.model, source, self.group_column, self.gather_scores)

    def evaluate(self, source: Source) -> dict[str, float]:
        """loss (mean BCE over all rows) and each compiled metric, over the whole source."""
        return evaluate_model(self.model, source, self.metrics, self.group_column,
                              self.gather_scores)


def _len_or_none(source: object) -> int | None:
    try:
        return len(source)  # type: ignore[arg-type]
    except TypeError:
        return None


def _progress(enabled: bool, total: int | None, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="sample",
        unit_scale=True,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
        disable=None,
    )
