"""DIN's local activation unit and the attention pooling built on it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dinrec.kernels.rows import key_query, weighted_row_sum
from dinrec.layers.activation import Dice, make_activation
from dinrec.layers.compiled import CompiledOrEager
from dinrec.layers.mlp import MLP
from dinrec.layers.packing import Packed, pack


class ActivationUnit(nn.Module):
    """Scores each behavior against the candidate: an MLP over [k, q, k - q, k * q] -> 1
    (with side_dim S > 0: [k, q, k - q, k * q, s], s the behavior's own values [S]).

    The first layer is one Linear(4E, H) (its weights are exactly those of the naive
    concatenation), but it is evaluated as
        W[k, q, k-q, k*q] = (Wk + Wd) k + (Wq - Wd) q + Wp (k*q)
    so the query's share is computed once per sample instead of once per behavior and the
    per-behavior GEMM is 2E wide instead of 4E (about half of DIN's FLOPs at E=32).

    Args:
        dim: E, width of a query / key (the concatenated behavior features).
        hidden_units: widths of the MLP (the paper's activation unit; DeepCTR's 80, 40).
        activation: "dice" (paper), "prelu", "relu", ...
        side_dim: S, per-behavior values (VarLenDenseFeat, e.g. time since the behavior)
            appended to each behavior's input; 0 (DeepCTR's unit) by default.

    Shapes: query [B, E], keys [B, T, E], mask [B, T], side [B, T, S] -> scores [B, T].
    """

    def __init__(
        self, dim: int, hidden_units: Sequence[int], activation: str = "dice",
        side_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.side_dim = side_dim
        hidden = list(hidden_units)
        first_out = hidden[0] if hidden else 1
        self.first = nn.Linear(4 * dim + side_dim, first_out)
        self.first_act = (
            make_activation(activation, first_out, setting="att_activation") if hidden else None
        )
        self.rest = MLP(first_out, hidden[1:], activation, setting="att_activation")
        self.out = nn.Linear(self.rest.out_dim, 1) if hidden else None
        self.compiled = False  # packed_scores through torch.compile (see compile_packed)
        self.matmul_dtype: torch.dtype | None = None  # packed GEMM inputs (see packed_bf16)

    def compile_packed(self, enabled: bool = True) -> None:
        """Run packed_scores through torch.compile (eager again if compiling fails).

        Outputs equal the eager ones up to float rounding; the first call of each mode
        (training, inference) pays the compile time (tens of seconds on a CPU).
        """
        self.compiled = enabled

    def packed_bf16(self, enabled: bool = True) -> None:
        """Multiply in bfloat16 (fp32 accumulation and outputs) in packed_scores' hidden layers.

        The [N, 2E] x [2E, H] and [N, H] x [H, H2] GEMMs are most of DIN's FLOPs; with
        AVX512-BF16 they run ~2.5x faster. Activations, Dice statistics, the query's share
        and the output layer stay fp32, and weights are stored in fp32.
        """
        self.matmul_dtype = torch.bfloat16 if enabled else None

    def split_first(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(key weight [H, 2E + S] acting on [k, k*q, s], query weight [H, E])."""
        e = self.dim
        wk, wq, wd, wp = self.first.weight[:, : 4 * e].split(e, dim=1)  # each [H, E]
        if self.side_dim:
            return torch.cat([wk + wd, wp, self.first.weight[:, 4 * e :]], dim=1), wq - wd
        return torch.cat([wk + wd, wp], dim=1), wq - wd

    def query_part(self, query: torch.Tensor) -> torch.Tensor:
        """The query's share of the first layer, bias included: [C, E] -> [C, H]."""
        _, w_query = self.split_first()
        return torch.addmm(self.first.bias, query, w_query.t())

    def scores_from_parts(self, first: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Finish the MLP from the first layer's pre-activation [B, T, H] -> [B, T]."""
        if self.first_act is None:
            return first.squeeze(-1)
        h = self.rest(self.first_act(first, mask), mask)
        assert self.out is not None
        return self.out(h).squeeze(-1)

    def packed_scores(
        self, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor,
        side: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores of packed behaviors: query [B, E], keys [N, E], rows [N], side [N, S]
        (when side_dim > 0) -> [N].

        Every row is a valid behavior, so Dice's batch statistics over the N rows are the
        masked statistics of the padded layout, with no mask to carry.
        """
        if self.compiled:
            return _COMPILED_PACKED_SCORES(self, query, keys, rows, side)
        return _packed_scores(self, query, keys, rows, side)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
        side: torch.Tensor | None = None,
    ) -> torch.Tensor:
        w_key, _ = self.split_first()
        kq = with_side(torch.cat([keys, keys * query.unsqueeze(1)], dim=-1), side, self)
        first = torch.matmul(kq, w_key.t()) + self.query_part(query).unsqueeze(1)  # [B, T, H]
        return self.scores_from_parts(first, mask)


def with_side(kq: torch.Tensor, side: torch.Tensor | None, unit: ActivationUnit) -> torch.Tensor:
    """[..., 2E] behavior inputs with the behavior's own values appended: [..., 2E + S]."""
    if side is None:
        if unit.side_dim:
            raise ValueError(f"this activation unit takes {unit.side_dim} per-behavior "
                             "value(s) (VarLenDenseFeat); none were given")
        return kq
    if side.shape[-1] != unit.side_dim:
        raise ValueError(f"per-behavior values have width {side.shape[-1]}; the activation "
                         f"unit was built for {unit.side_dim}")
    return torch.cat([kq, side.to(kq.dtype)], dim=-1)


def _packed_scores(
    unit: ActivationUnit, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor,
    side: torch.Tensor | None = None,
) -> torch.Tensor:
    """ActivationUnit.packed_scores, as a function so one compiled version serves all units."""
    w_key, w_query = unit.split_first()
    # [k, k*q] per behavior [N, 2E]; in training one pass each way (dinrec/kernels/rows.c),
    # not gather + mul + cat and their backward (the inference export traces torch ops).
    # Per-behavior values s [N, S] are appended: [N, 2E + S].
    kq = with_side(key_query(keys, query, rows, native=unit.training), side, unit)
    query_part = torch.addmm(unit.first.bias, query, w_query.t())  # [B, H], once per row
    low = unit.matmul_dtype
    act = unit.first_act
    if act is None or unit.out is None:  # no hidden layer: the first layer is the score
        return _packed_first(kq, w_key, query_part, rows, low).squeeze(-1)
    if isinstance(act, Dice) and act.training:
        # Dice adds the sample's query part row by row itself (and sums its gradient per
        # sample), so the [N, H] gathered bias is never built.
        h = act.forward_rows(_mm(kq, w_key.t(), low), query_part, rows)  # [N, H]
    else:
        h = act(_packed_first(kq, w_key, query_part, rows, low), None)  # [N, H]
    if low is None:
        h = unit.rest(h, None)
    else:
        # The unit's MLP has no BatchNorm or dropout (see __init__), only Linear -> activation.
        for linear, layer_act in zip(unit.rest.linears, unit.rest.acts, strict=True):
            assert isinstance(linear, nn.Linear)
            h = layer_act(_low_mm(h, linear.weight.t(), low) + linear.bias, None)
    return unit.out(h).squeeze(-1)  # [N]


def _packed_first(
    kq: torch.Tensor,
    w_key: torch.Tensor,
    query_part: torch.Tensor,
    rows: torch.Tensor,
    low: torch.dtype | None,
) -> torch.Tensor:
    """The first layer's pre-activation: kq [N, 2E] @ w_key.T + query_part[rows] -> [N, H]."""
    if low is None:
        return torch.addmm(query_part.index_select(0, rows), kq, w_key.t())
    return _low_mm(kq, w_key.t(), low) + query_part.index_select(0, rows)


def _mm(x: torch.Tensor, weight_t: torch.Tensor, low: torch.dtype | None) -> torch.Tensor:
    """x @ weight_t in fp32, or with `low`-precision inputs (fp32 result)."""
    return torch.mm(x, weight_t) if low is None else _low_mm(x, weight_t, low)


# bf16 GEMMs on CPU go through oneDNN, which builds (JIT-compiles) and caches one kernel per
# shape: with N changing every batch that costs time on every step and ~1 MiB of cache per
# shape (peak RSS 1.7 GiB on ml100k). Rows are padded to a multiple of this instead, so a
# run sees a handful of shapes.
_ROW_BUCKET = 1024


def _low_mm(x: torch.Tensor, weight_t: torch.Tensor, low: torch.dtype) -> torch.Tensor:
    """x [N, K] @ weight_t [K, H] with inputs in `low` precision, fp32 result [N, H]."""
    n = x.shape[0]
    rows = -(-n // _ROW_BUCKET) * _ROW_BUCKET
    padded = F.pad(x.to(low), (0, 0, 0, rows - n))  # [rows, K], zero rows at the end
    return torch.mm(padded, weight_t.to(low))[:n].float()


def _packed_interest(
    unit: ActivationUnit, query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor,
    batch: int, side: torch.Tensor | None = None, behavior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(interest [B, E], weights [N]) without weight normalization: one function to compile,
    so the weighted sum and its backward fuse with the unit's last layer. behavior [N]: each
    behavior's own weight (weight_name), multiplying its score."""
    scores = _packed_scores(unit, query, keys, rows, side)  # [N]
    if behavior is not None:
        scores = scores * behavior.to(scores.dtype)
    interest = weighted_row_sum(scores, keys, rows, batch, native=unit.training)  # [B, E]
    return interest, scores


_COMPILED_PACKED_SCORES = CompiledOrEager(_packed_scores, "the activation unit")
_COMPILED_PACKED_INTEREST = CompiledOrEager(_packed_interest, "the attention pooling")


def mask_scores(
    scores: torch.Tensor, mask: torch.Tensor, weight_normalization: bool
) -> torch.Tensor:
    """Attention weights from raw scores [B, T]: padded slots get exactly 0 (and no gradient).

    Without normalization (the paper's choice, keeping the intensity of interest) the weight
    is the raw score; with it, a softmax over the valid slots (an all-padding row gives 0s).
    """
    if not weight_normalization:
        return scores.masked_fill(~mask, 0.0)
    filled = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(filled, dim=-1)
    return weights.masked_fill(~mask, 0.0)  # rows with no valid slot: NaN -> 0


class AttentionPooling(nn.Module):
    """Interest vector = sum over valid behaviors of activation-unit weight * key (times the
    behavior's own weight w_t when the history has a weight_name).

    Shapes: query [B, E], keys [B, T, E], mask [B, T], side [B, T, S] (the behaviors' own
    values, when side_dim > 0), behavior [B, T] (w_t) -> (interest [B, E], weights [B, T]).
    """

    def __init__(
        self,
        dim: int,
        hidden_units: Sequence[int] = (80, 40),
        activation: str = "dice",
        weight_normalization: bool = False,
        side_dim: int = 0,
    ) -> None:
        super().__init__()
        self.unit = ActivationUnit(dim, hidden_units, activation, side_dim)
        self.weight_normalization = weight_normalization

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
        side: torch.Tensor | None = None, behavior: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack(mask)
        side_rows = packed.gather(side) if side is not None else None  # [N, S]
        rows = packed.gather(behavior.unsqueeze(-1)).squeeze(-1) if behavior is not None else None
        interest, weights = self.pool_packed(query, packed.gather(keys), packed, side_rows, rows)
        return interest, packed.unpack(weights)

    def pool_packed(
        self, query: torch.Tensor, keys: torch.Tensor, packed: Packed,
        side: torch.Tensor | None = None, behavior: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention over packed behaviors: query [B, E], keys [N, E] (the valid positions of
        `packed`), side [N, S], behavior [N] -> (interest [B, E], weights [N]).

        weights = a_t * w_t: the activation weight a_t (after the softmax under
        weight_normalization) times the behavior's own weight w_t (1 without `behavior`),
        so interest = sum_t weights_t * k_t. The unit's input is unchanged by w_t: a
        behavior of weight w counts as w copies of it. Padded positions are never
        computed, so they get no weight and no gradient.
        """
        if not self.weight_normalization:
            fn = _COMPILED_PACKED_INTEREST if self.unit.compiled else _packed_interest
            return fn(self.unit, query, keys, packed.rows, packed.batch, side, behavior)
        scores = self.unit.packed_scores(query, keys, packed.rows, side)  # [N]
        # Softmax per batch row over its valid positions only, in the padded layout.
        full = mask_scores(packed.unpack(scores), packed.mask, True)  # [B, T]
        scores = packed.gather(full.unsqueeze(-1)).squeeze(-1)  # [N]
        if behavior is not None:
            scores = scores * behavior.to(scores.dtype)
        interest = packed.sum_rows(scores.unsqueeze(-1) * keys)  # [B, E]
        return interest, scores
