"""The one evaluation pass: score a source in eval mode, and its loss and metrics.

Behind Trainer.evaluate, model.predict and the experiment runners (which evaluate saved
models without building a Trainer or an optimizer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from dinrec.metrics import Metric, compute_metrics, logloss
from dinrec.training.batches import Batch, epoch_batches, module_device, to_device

Source = Iterable[tuple[Batch, torch.Tensor]]

# Trainer.gather_scores: (source, probabilities, labels, groups) -> the same, of every rank.
GatherScores = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def score_source(
    model: torch.nn.Module, source: Source, group_column: str | None = None,
    gather: GatherScores | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(probabilities [N], labels [N], groups [N] or None) of every row, in eval mode under
    inference_mode; with `gather` (torchrun), every rank's rows with padding duplicates
    dropped. The one scoring pass behind Trainer.evaluate and the experiment runners."""
    logits, labels, groups = [], [], []
    device = module_device(model)
    with eval_mode(model), torch.inference_mode():
        for feats, y in epoch_batches(source, 0):
            feats, y = to_device(feats, y, device)
            logits.append(model(feats).squeeze(-1))
            labels.append(y)
            if group_column is not None and group_column in feats:
                groups.append(feats[group_column])
    if not logits:
        raise ValueError("the evaluation data yielded no batches")
    prob = torch.sigmoid(torch.cat(logits)).cpu().numpy()
    g = torch.cat(groups).cpu().numpy() if groups else None
    y_all = torch.cat(labels).cpu().numpy()
    if gather is not None:
        return gather(source, prob, y_all, g)
    return prob, y_all, g


def evaluate_model(
    model: torch.nn.Module, source: Source, metrics: Sequence[Metric],
    group_column: str | None = None, gather: GatherScores | None = None,
) -> dict[str, float]:
    """{"loss": mean BCE over all rows, each metric: its value} over the whole source.

    Needs no optimizer (evaluation builds no Trainer); metrics from resolve_metrics.
    """
    prob, y, groups = score_source(model, source, group_column, gather)
    out = {"loss": logloss(y, prob)}
    out.update(compute_metrics(metrics, y, prob, groups))
    return out


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
    device = module_device(model)
    with eval_mode(model), torch.inference_mode():
        for feats, y in epoch_batches(source, 0):
            feats, _ = to_device(feats, y, device)
            out.append(model(feats).squeeze(-1).cpu())
    return torch.cat(out) if out else torch.empty(0)
