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

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.pooling import sequence_mask
from dinrec.training.batches import Batch

if TYPE_CHECKING:  # the models package imports the trainer (Keras facade)
    from dinrec.models.network import InterestNetwork


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


def present_rows(ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    """The distinct ids of `ids` [K], ascending [U] (torch.unique's answer).

    For a table not much larger than the batch's ids a presence mask over its rows is a
    scatter and a scan, where torch.unique sorts the K ids (~2 ms of an ml-100k step over
    its tables); for huge tables sorting the K ids is the cheaper of the two.
    """
    if num_rows > 8 * ids.numel():
        return torch.unique(ids)
    mask = torch.zeros(num_rows, dtype=torch.bool, device=ids.device)
    mask[ids] = True
    return mask.nonzero().squeeze(1)


class Regularizer:
    """The penalty added to each batch's loss, as the model's config asks.

    Args:
        model: the network (its config picks l2 / mba and the strengths).
        frequencies: n_j per table (count_frequencies), required for "mba".
        ids_hook: maps the batch's ids per table to the ids to penalise (under DDP: the
            union over every rank's batch, so each rank adds the global batch's penalty).

    Call: regularizer(batch) -> scalar tensor (0 when nothing applies).
    """

    def __init__(
        self,
        model: InterestNetwork,
        frequencies: dict[str, torch.Tensor] | None = None,
        ids_hook: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        cfg = model.config
        self.model = model
        self.mode = cfg.embedding_regularization
        self.embedding_lambda = (
            cfg.resolved_mba_lambda if self.mode == "mba" else cfg.resolved_l2_reg_embedding
        )
        self.dnn_lambda = float(cfg.l2_reg_dnn)
        if self.mode == "mba" and self.embedding_lambda > 0 and frequencies is None:
            raise ValueError(
                "embedding_regularization='mba' needs id frequencies from the training data"
            )
        self.frequencies = dict(frequencies or {})
        self.ids_hook = ids_hook
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
        ids_by_table = table_ids(self.model, batch)
        if self.ids_hook is not None:
            ids_by_table = self.ids_hook(ids_by_table)
        for table, ids in ids_by_table.items():
            weight = bank.table(table).weight
            if not weight.requires_grad or ids.numel() == 0:
                continue
            rows = torch.unique(ids)  # [U]: each present id once, however often it occurs
            scale = self.inverse_frequency[table][rows]  # [U]
            total = total + (weight[rows].pow(2).sum(dim=1) * scale).sum()
        return self.embedding_lambda * total

    def penalised_ids(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The ids MBA penalises for a batch: its ids per table, through ids_hook (under DDP
        the union over every rank's batch)."""
        ids_by_table = table_ids(self.model, batch)
        return self.ids_hook(ids_by_table) if self.ids_hook is not None else ids_by_table

    def _direct_mba(self, batch: Batch, given: dict[str, torch.Tensor] | None = None) -> float:
        """MBA's gradient added straight into the tables' gradients; returns the penalty.

        d/dw_j of lambda * ||w_j||^2 / n_j is 2 * lambda * w_j / n_j on the batch's rows only:
        one index_add per table (a sparse COO gradient for sparse-gradient tables), instead
        of an autograd graph through weight[rows], whose backward scatters into a dense
        [V, E] gradient (~12% of an ml-100k training step).
        """
        bank = self.model.embeddings
        ids_by_table = given if given is not None else self.penalised_ids(batch)
        value = 0.0
        for table, ids in ids_by_table.items():
            emb = bank.table(table)
            weight = emb.weight
            if not weight.requires_grad or ids.numel() == 0:
                continue
            rows = present_rows(ids, weight.shape[0])  # [U]: each present id once
            scale = self.inverse_frequency[table][rows].unsqueeze(1)  # [U, 1]
            w = weight.detach().index_select(0, rows)  # [U, E]
            value += self.embedding_lambda * float((w.pow(2) * scale).sum())
            step = w * scale * (2.0 * self.embedding_lambda)  # [U, E]
            if emb.sparse:
                grad = torch.sparse_coo_tensor(rows.unsqueeze(0), step, weight.shape,
                                               check_invariants=False)  # rows are unique
                weight.grad = grad if weight.grad is None else weight.grad + grad
            elif weight.grad is None:
                weight.grad = torch.zeros_like(weight).index_add_(0, rows, step)
            else:
                weight.grad.index_add_(0, rows, step)
        return value

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

    # ----- the training step's split: autograd for the data loss, direct gradients here --
    def batch_penalty(self, batch: Batch) -> torch.Tensor:
        """The part of the penalty backpropagated with the loss: none (every term, MBA's
        included, adds its gradient directly in add_direct_gradients). Kept so a custom
        step can stay written as loss + batch_penalty."""
        return torch.zeros(())

    def _direct_terms(self) -> list[tuple[float, torch.Tensor]]:
        """(lambda, weight) of every whole-tensor L2 term: full-table L2 and DNN L2."""
        terms: list[tuple[float, torch.Tensor]] = []
        if self.mode == "l2" and self.embedding_lambda != 0:
            bank = self.model.embeddings
            for name in self.model.schema.tables:
                weight = bank.table(name).weight
                if weight.requires_grad:
                    terms.append((self.embedding_lambda, weight))
        if self.dnn_lambda != 0:
            for linear in self.model.mlp.linears:
                assert isinstance(linear, torch.nn.Linear)
                terms.append((self.dnn_lambda, linear.weight))
        return terms

    @torch.no_grad()
    def add_direct_gradients(self, batch: Batch | None = None,
                             ids: dict[str, torch.Tensor] | None = None) -> float:
        """After backward: grad += 2 * lambda * w for every whole-tensor L2 term and, given the
        batch, MBA's 2 * lambda * w_j / n_j on the batch's rows; returns the penalty they add.

        The same gradient as backpropagating lambda * ||w||^2, without ~6 autograd ops per
        table per step (full-table L2 is DeepCTR's default, so every step pays for it).
        ids: penalised_ids(batch) when the caller has it already (one union a step).
        """
        mba_value = 0.0
        if batch is not None and self.mode == "mba" and self.embedding_lambda != 0:
            mba_value = self._direct_mba(batch, ids)
        terms = self._direct_terms()
        if not terms:
            return mba_value
        weights = [w for _, w in terms]
        norms = torch._foreach_norm(weights)  # one op for every table: ||w|| each
        value = sum(lam * float(n) ** 2 for (lam, _), n in zip(terms, norms, strict=True))
        for lam, weight in terms:
            if weight.grad is None:
                weight.grad = weight.detach() * (2.0 * lam)
            elif weight.grad.is_sparse:
                weight.grad = weight.grad.to_dense().add_(weight, alpha=2.0 * lam)
            else:
                weight.grad.add_(weight, alpha=2.0 * lam)
        return float(value) + mba_value
