"""Trainer: the training loop behind model.fit / evaluate / predict.

Loss is BCEWithLogits on the model's logits (no sigmoid in the model) plus the configured
regularization. Metrics are computed once per epoch over all of the epoch's predictions,
never averaged over batches, so a one-class batch cannot crash or skew them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dinrec.metrics import Metric, compute_metrics, resolve_metrics
from dinrec.models.network import InterestNetwork
from dinrec.training.batches import Batch, epoch_batches, source_rows
from dinrec.training.callbacks import Callback, History
from dinrec.training.optimizers import make_optimizer
from dinrec.training.regularization import Regularizer, count_frequencies

LOSSES = ("binary_crossentropy", "logloss", "bce")
Source = Iterable[tuple[Batch, torch.Tensor]]


def default_group_column(model: InterestNetwork) -> str | None:
    """The column GAUC groups by when none is named: user_id, then user, then uid."""
    names = {c.name for c in model.schema.sparse}
    for candidate in ("user_id", "user", "uid", "userid"):
        if candidate in names:
            return candidate
    return None


class Trainer:
    """Fits an InterestNetwork on batch sources; evaluation gathers every score first.

    Args:
        model: the network (pure nn.Module returning logits).
        optimizer: a name ('adam', 'adagrad', 'sgd', 'rmsprop') or a torch optimizer.
        loss: 'binary_crossentropy' (alias 'logloss'); BCEWithLogits on logits.
        metrics: metric names (see dinrec.metrics); unknown names raise.
        group_column: input GAUC groups by (default: user_id / user / uid when present).
        lr: learning rate for a named optimizer (Keras defaults otherwise).
    """

    def __init__(
        self,
        model: InterestNetwork,
        optimizer: Any = "adam",
        loss: str = "binary_crossentropy",
        metrics: Sequence[str] | None = None,
        group_column: str | None = None,
        lr: float | None = None,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {list(LOSSES)}")
        if isinstance(metrics, str):
            metrics = [metrics]
        self.model = model
        self.optimizer = make_optimizer(optimizer, model.parameters(), lr)
        self.metrics: list[Metric] = resolve_metrics(list(metrics or []))
        self.group_column = group_column or default_group_column(model)
        if any(m.needs_groups for m in self.metrics):
            sparse = {c.name for c in model.schema.sparse}
            if self.group_column is None or self.group_column not in sparse:
                raise ValueError(
                    f"metric 'gauc' groups by a user column; {self.group_column!r} is not a "
                    f"SparseFeat (have {sorted(sparse)}); pass gauc_group=... to compile"
                )
        self.regularizer: Regularizer | None = None
        self.stop_training = False
        self.global_step = 0

    # ----- training ----------------------------------------------------------------------
    def prepare_regularizer(self, train: Source) -> None:
        """Count id frequencies for MBA (one pass over the training data) and build it."""
        freqs = None
        if self.model.config.embedding_regularization == "mba":
            freqs = count_frequencies(self.model, epoch_batches(train, 0))
        self.regularizer = Regularizer(self.model, freqs)

    def train_step(self, feats: Batch, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (total loss, logits [B]) detached."""
        assert self.regularizer is not None
        logits = self.model(feats).squeeze(-1)  # [B]
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        total = loss + self.regularizer(feats)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.global_step += 1
        return total.detach(), logits.detach()

    def fit(
        self,
        train: Source,
        epochs: int = 1,
        initial_epoch: int = 0,
        verbose: int = 1,
        callbacks: Sequence[Callback] | None = None,
        validation: Source | None = None,
    ) -> History:
        """Train for epochs [initial_epoch, epochs); returns the History."""
        history = History()
        cbs: list[Callback] = [*(callbacks or []), history]
        for cb in cbs:
            cb.set_trainer(self)
        history.params = {"epochs": epochs, "steps": _len_or_none(train), "verbose": verbose}
        self.prepare_regularizer(train)
        self.stop_training = False
        for cb in cbs:
            cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            start = time.perf_counter()
            logs = self._train_epoch(train, epoch, epochs, verbose)
            if validation is not None:
                val = self.evaluate(validation)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if verbose:
                took = time.perf_counter() - start
                line = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
                print(f"Epoch {epoch + 1}/{epochs} - {took:.1f}s - {line}", flush=True)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history

    def _train_epoch(
        self, train: Source, epoch: int, epochs: int, verbose: int
    ) -> dict[str, float]:
        self.model.train()
        total_loss, total_rows = 0.0, 0
        scores: list[torch.Tensor] = []
        labels_seen: list[torch.Tensor] = []
        groups: list[torch.Tensor] = []
        bar = _progress(verbose == 1, source_rows(train), f"Epoch {epoch + 1}/{epochs}")
        for feats, labels in epoch_batches(train, epoch):
            loss, logits = self.train_step(feats, labels)
            rows = int(labels.shape[0])
            total_loss += float(loss) * rows
            total_rows += rows
            if self.metrics:
                scores.append(logits)
                labels_seen.append(labels)
                if self.group_column is not None and self.group_column in feats:
                    groups.append(feats[self.group_column])
            if bar is not None:
                bar.update(rows)
                bar.set_postfix(loss=f"{total_loss / total_rows:.4f}", refresh=False)
        if bar is not None:
            bar.close()
        if total_rows == 0:
            raise ValueError("the training data yielded no batches")
        logs = {"loss": total_loss / total_rows}
        if self.metrics:
            logs.update(self._metrics(scores, labels_seen, groups))
        return logs

    # ----- evaluation --------------------------------------------------------------------
    def scores(self, source: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(probabilities [N], labels [N], groups [N] or None) in eval + inference mode."""
        logits, labels, groups = [], [], []
        with eval_mode(self.model), torch.inference_mode():
            for feats, y in epoch_batches(source, 0):
                logits.append(self.model(feats).squeeze(-1))
                labels.append(y)
                if self.group_column is not None and self.group_column in feats:
                    groups.append(feats[self.group_column])
        if not logits:
            raise ValueError("the evaluation data yielded no batches")
        prob = torch.sigmoid(torch.cat(logits)).numpy()
        g = torch.cat(groups).numpy() if groups else None
        return prob, torch.cat(labels).numpy(), g

    def evaluate(self, source: Source) -> dict[str, float]:
        """loss (mean BCE over all rows) and each compiled metric, over the whole source."""
        prob, y, groups = self.scores(source)
        out = {"loss": _logloss(y, prob)}
        out.update(compute_metrics(self.metrics, y, prob, groups))
        return out

    def _metrics(
        self, logits: list[torch.Tensor], labels: list[torch.Tensor], groups: list[torch.Tensor]
    ) -> dict[str, float]:
        prob = torch.sigmoid(torch.cat(logits)).numpy()
        g = torch.cat(groups).numpy() if groups else None
        return compute_metrics(self.metrics, torch.cat(labels).numpy(), prob, g)


class eval_mode:
    """Context: model.eval() inside, the previous mode restored after (even on error)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> torch.nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def predict_logits(model: torch.nn.Module, source: Source) -> torch.Tensor:
    """Logits [N] for every row of a source, in eval mode under inference_mode."""
    out = []
    with eval_mode(model), torch.inference_mode():
        for feats, _ in epoch_batches(source, 0):
            out.append(model(feats).squeeze(-1))
    return torch.cat(out) if out else torch.empty(0)


def _logloss(y: np.ndarray, prob: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(prob.astype(np.float64), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


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
