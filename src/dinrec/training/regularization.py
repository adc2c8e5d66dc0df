"""Regularization: full-table L2 (DeepCTR), the paper's mini-batch aware L2, and DNN L2.

Mini-batch aware regularization (DIN paper, section 4.3.1): with n_j the number of training
samples' occurrences of id j, the per-batch penalty is

    lambda * sum over tables, over unique ids j present in the batch, of ||w_j||^2 / n_j

so one step touches only the rows the batch uses (full-table L2 touches every row every
step), and over an epoch each row is penalised about once in total (it appears in about n_j
batches, each adding 1/n_j of its penalty). Frequent ids get a small per-step penalty, rare
ids a large one: rare ids are where the overfitting is.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.pooling import sequence_mask
from dinrec.models.network import InterestNetwork
from dinrec.training.batches import Batch


def table_ids(model: InterestNetwork, batch: Batch) -> dict[str, torch.Tensor]:
    """Every id each table is asked for by one batch, padding excluded: table -> ids [K]."""
    per_table: dict[str, list[torch.Tensor]] = {}
    for col in model.schema.columns:
        if isinstance(col, SparseFeat):
            ids = batch[col.name].reshape(-1)
        elif isinstance(col, VarLenSparseFeat):
            seq = batch[col.name]
            lengths = batch[col.length_name] if col.length_name is not None else None
            ids = seq[sequence_mask(seq, lengths)]
        else:
            continue
        per_table.setdefault(col.table, []).append(ids)
    return {t: torch.cat(parts) for t, parts in per_table.items()}


def count_frequencies(
    model: InterestNetwork, batches: Iterable[tuple[Batch, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """n_j per table: occurrences of each id in the training data ([num_embeddings] float32)."""
    counts = {
        name: torch.zeros(spec.num_embeddings, dtype=torch.float64)
        for name, spec in model.schema.tables.items()
    }
    for batch, _ in batches:
        for table, ids in table_ids(model, batch).items():
            counts[table] += torch.bincount(ids, minlength=counts[table].numel()).to(torch.float64)
    return {name: c.to(torch.float32) for name, c in counts.items()}


class Regularizer:
    """The penalty added to each batch's loss, as the model's config asks.

    Args:
        model: the network (its config picks l2 / mba and the strengths).
        frequencies: n_j per table (count_frequencies), required for "mba".

    Call: regularizer(batch) -> scalar tensor (0 when nothing applies).
    """

    def __init__(
        self, model: InterestNetwork, frequencies: dict[str, torch.Tensor] | None = None
    ) -> None:
        cfg = model.config
        self.model = model
        self.mode = cfg.embedding_regularization
        self.embedding_lambda = (
            cfg.resolved_mba_lambda if self.mode == "mba" else float(cfg.l2_reg_embedding)
        )
        self.dnn_lambda = float(cfg.l2_reg_dnn)
        if self.mode == "mba" and self.embedding_lambda > 0 and frequencies is None:
            raise ValueError(
                "embedding_regularization='mba' needs id frequencies from the training data"
            )
        self.frequencies = dict(frequencies or {})
        # 1 / n_j, with unseen ids (n_j = 0) at 0: they never occur in a training batch.
        self.inverse_frequency = {
            t: torch.where(c > 0, 1.0 / c.clamp_min(1.0), torch.zeros_like(c))
            for t, c in (frequencies or {}).items()
        }

    def embedding_penalty(self, batch: Batch) -> torch.Tensor:
        bank = self.model.embeddings
        total = torch.zeros(())
        if self.embedding_lambda == 0:
            return total
        if self.mode == "l2":
            for name in self.model.schema.tables:
                weight = bank.table(name).weight
                if weight.requires_grad:
                    total = total + weight.pow(2).sum()
            return self.embedding_lambda * total
        for table, ids in table_ids(self.model, batch).items():
            weight = bank.table(table).weight
            if not weight.requires_grad or ids.numel() == 0:
                continue
            rows = torch.unique(ids)  # [U]: each present id once, however often it occurs
            scale = self.inverse_frequency[table][rows]  # [U]
            total = total + (weight[rows].pow(2).sum(dim=1) * scale).sum()
        return self.embedding_lambda * total

    def dnn_penalty(self) -> torch.Tensor:
        total = torch.zeros(())
        if self.dnn_lambda == 0:
            return total
        for linear in self.model.mlp.linears:
            assert isinstance(linear, torch.nn.Linear)
            total = total + linear.weight.pow(2).sum()
        return self.dnn_lambda * total

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.embedding_penalty(batch) + self.dnn_penalty()
