"""The serving forward pass: the user side once per request, broadcast over the candidates.

A rank request scores C candidates for one user. model(inputs) on C copies of the user's
inputs would embed the history C times and run the activation unit's first layer on
[k, q, k - q, k * q] for every (candidate, behavior) pair. Here the history embeddings, its
mask, and the profile / pooled embeddings are computed once per user and broadcast (views, no
copies), and the first layer is split (see ActivationUnit.split_first):

    W [k, q, k-q, k*q] + b = Wk' k  +  Wp (k * q)  +  (Wq' q + b)
                             user     per pair       per candidate

The per-pair term needs one [T, E] @ [E, H] product per candidate whatever we do, so the
user's share rides in the same product: K @ A_c with A_c = Wk'^T + diag(q_c) Wp^T [E, H],
built once per candidate. Only that product and the rest of the small attention MLP run per
(candidate, behavior); nothing of width 4E is ever formed.

Inputs come in two blocks: `user` tensors have a batch of U rows (U = 1 for a rank request,
U = C for stateless scoring, where every row is its own user) and `candidates` tensors (the
query features, e.g. item_id and cate_id) have C rows. In eager mode U = 1 broadcasts for free;
the exported graph instead takes `row_user` [C], the user row of each candidate, and gathers,
because an exported graph cannot broadcast between two independent dynamic sizes. There the
activation unit runs channels first (channels_first.py), which ONNX Runtime runs faster.

Example:
    >>> forward = BroadcastForward(model)                                # doctest: +SKIP
    >>> logits = forward(user_inputs, candidate_inputs)   # [C]          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dinrec.layers.attention import ActivationUnit, mask_scores
from dinrec.models.network import InterestNetwork
from dinrec.schema import FeatureSchema, HistoryGroup
from dinrec.serving.channels_first import channels_first_scores, pooled
from dinrec.serving.unit_kernel import unit_scores

Batch = dict[str, torch.Tensor]


def candidate_inputs(schema: FeatureSchema) -> tuple[str, ...]:
    """Inputs that vary per candidate: the query features (item_id, cate_id, ...) of every
    attended history, history_feature_list's first, each once."""
    names: dict[str, None] = {c.name: None for c in schema.queries}
    for group in schema.groups:
        names.update((c.name, None) for c in group.queries)
    return tuple(names)


def user_inputs(schema: FeatureSchema) -> tuple[str, ...]:
    """Every other model input (profile, history, lengths, weights, dense), in schema order."""
    per_candidate = set(candidate_inputs(schema))
    names: dict[str, None] = {}
    for col in schema.columns:
        if col.name in per_candidate:
            continue
        names.setdefault(col.name, None)
        for extra in (getattr(col, "weight_name", None), getattr(col, "length_name", None)):
            if extra is not None:
                names.setdefault(extra, None)
    return tuple(names)


class BroadcastForward(nn.Module):
    """Logits for C candidates from U user rows, the user side computed once per user row.

    Equal to model(inputs) on the expanded inputs (the parity test holds it to 1e-5): the
    features come from the model's own assembly (InterestNetwork.embed_features); only the
    attention interest is computed here, split per user and per candidate.

    Args:
        model: a DIN or Base Model (InterestNetwork), in eval mode.

    Shapes: user {name: [U, ...]}, candidates {name: [C]}, row_user [C] int64 or None
    (None: U must be 1 or C) -> logits [C].
    """

    def __init__(self, model: InterestNetwork) -> None:
        super().__init__()
        self.model = model
        self.groups = model.schema.groups  # resolved once (the property resolves each time)

    def forward(
        self, user: Batch, candidates: Batch, row_user: torch.Tensor | None = None
    ) -> torch.Tensor:
        model = self.model
        n = next(iter(candidates.values())).shape[0]  # C

        def to_rows(t: torch.Tensor) -> torch.Tensor:
            return _rows(t, n, row_user)

        # The model's own assembly: user-side parts embedded once per user row, then
        # broadcast (U = 1) or gathered (row_user) to the C candidates.
        embedded = model.embed_features(user, candidates, to_rows)
        # Each attended history (history_feature_list's, then each named group) on its own
        # mask, keys and unit, in the order the MLP's first layer was built for.
        interests = [
            self._interest(user, candidates, embedded.query(group.features), row_user, group)
            for group in self.groups
        ]
        return model.out(model.mlp(embedded.mlp_input(interests))).squeeze(-1)  # [C]

    def _interest(
        self, user: Batch, candidates: Batch, query: torch.Tensor, row_user: torch.Tensor | None,
        group: HistoryGroup,
    ) -> torch.Tensor:
        """Interest vectors [C, Eq + S] of one history for each candidate's user; query
        [C, Eq]; S the width of the history's per-behavior values (0 without)."""
        n = query.shape[0]
        model = self.model
        pooling = model.pooling_of(group)
        if pooling is None:  # Base Model: sum/mean pooling, all user side
            return _rows(model.interest(user, group=group)[0], n, row_user)
        mask = model.history_mask(user, group)  # [U, T]
        keys = model.keys(user, group)  # [U, T, Eq]
        side = _side(user, group, keys.dtype)  # [U, T, S] or None
        unit = pooling.unit
        mask_c = _rows(mask, n, row_user)  # [C, T]
        if model.config.history_search is not None:
            # The same first stage as in training, per (candidate, behavior): the ids it
            # may match, broadcast to the candidates' rows (views when U == 1).
            ids = {c.name: _rows(user[c.name], n, row_user) for c in group.columns}
            ids.update({c.name: candidates[c.name] for c in group.queries})
            mask_c = model.select_behaviors(ids, mask_c, query, _rows(keys, n, row_user),
                                            group=group)
        one_user = row_user is None and keys.shape[0] == 1
        # One user (a rank call): the fused kernel, when it can run (unit_kernel.py); it
        # takes no per-behavior values.
        fused = unit_scores(unit, keys[0], query) if one_user and side is None else None
        if fused is not None:
            scores = fused
        elif row_user is not None:
            # The exported graph: every layer channel first, so ONNX Runtime's per-channel
            # ops run over long spans (channels_first.py)
            scores = channels_first_scores(unit, keys, query, row_user, side)
        else:
            scores = self._scores(unit, keys, query, mask_c, row_user, side)
        weights = mask_scores(scores, mask_c, pooling.weight_normalization)  # [C, T]
        behavior = model.behavior_weights(user, mask, group)  # [U, T] or None
        if behavior is not None:
            # a_t * w_t, as the training forward weighs them (AttentionPooling.pool_packed).
            weights = weights * _rows(behavior, n, row_user)
        values = keys if side is None else torch.cat([keys, side], dim=-1)  # [U, T, Eq + S]
        if one_user:
            # [C, T] @ [T, Eq + S]: the keys and, with the same weights, the behaviors' own
            # values (as InterestNetwork pools them).
            return torch.matmul(weights, values[0])
        if row_user is not None:  # the exported graph: the same, or gathered (an If node)
            return pooled(weights, values, row_user)
        return torch.bmm(weights.unsqueeze(1), _rows(values, n, row_user)).squeeze(1)

    @staticmethod
    def _scores(
        unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor, mask_c: torch.Tensor,
        row_user: torch.Tensor | None, side: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw scores [C, T] in torch ops: keys [U, T, Eq], query [C, Eq], mask_c [C, T],
        side [U, T, S] (the behaviors' own values) or None."""
        n = query.shape[0]
        e = unit.dim
        w_key, _ = unit.split_first()  # [H, 2E + S] acting on [k, k*q, s]
        w_k, w_p = w_key[:, :e].t(), w_key[:, e : 2 * e].t()  # each [E, H]
        # Per candidate c, Wk' k + Wp (k * q_c) = k @ A_c with A_c = Wk'^T + diag(q_c) Wp^T:
        # one [T, E] @ [E, H] product per candidate, exactly the FLOPs of the Wp (k * q) term
        # alone, so the user share Wk' k rides along for free instead of costing an extra
        # [C, T, H] add (measured 4-6x faster than materialising k * q and adding the parts).
        a = torch.addcmul(w_k, query.unsqueeze(2), w_p)  # [C, E, H]
        keys_c = _rows(keys, n, row_user)  # [C, T, E]: a stride-0 view when U == 1
        # The query's share (bias included) initialises the batched product's output; the
        # behaviors' own values add a user-side share Ws s [U, T, H], the same for every
        # candidate.
        init = unit.query_part(query).unsqueeze(1)  # [C, 1, H]
        if side is not None:
            init = init + _rows(torch.matmul(side, w_key[:, 2 * e :].t()), n, row_user)
        first = torch.baddbmm(init, keys_c, a)  # [C, T, H]
        # The rest of the MLP on [C*T, H] rows: 2-D, each Linear exports as one Gemm with its
        # bias fused instead of a batched MatMul plus an Add pass over [C, T, H].
        t = first.shape[1]
        flat = unit.scores_from_parts(first.reshape(n * t, -1), mask_c.reshape(n * t))
        return flat.reshape(n, t)  # [C, T]


def _side(user: Batch, group: HistoryGroup, dtype: torch.dtype) -> torch.Tensor | None:
    """A history's per-behavior values [U, T, S] (VarLenDenseFeat [U, T] / [U, T, D] each,
    in schema order, as InterestNetwork.packed_side joins them), or None."""
    if not group.side:
        return None
    parts = [user[c.name].reshape(*user[c.name].shape[:2], c.dimension) for c in group.side]
    return torch.cat(parts, dim=-1).to(dtype)


def _rows(t: torch.Tensor, n: int, row_user: torch.Tensor | None) -> torch.Tensor:
    """A user-side tensor [U, ...] -> [C, ...]: gathered by row_user, else U is 1 or C."""
    if row_user is not None:
        return t.index_select(0, row_user)
    if t.shape[0] == n:
        return t
    return t.expand(n, *t.shape[1:])  # U == 1: a view, no copy


class PositionalForward(nn.Module):
    """BroadcastForward with positional tensor inputs, in a fixed order (for ONNX export).

    forward(*user tensors in `user_names` order, *candidate tensors in `candidate_names`
    order, row_user [C]) -> logits [C].
    """

    def __init__(
        self, model: InterestNetwork, user_names: Sequence[str], candidate_names: Sequence[str]
    ) -> None:
        super().__init__()
        self.inner = BroadcastForward(model)
        self.user_names = tuple(user_names)
        self.candidate_names = tuple(candidate_names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        nu, nc = len(self.user_names), len(self.candidate_names)
        user = dict(zip(self.user_names, tensors[:nu], strict=True))
        candidates = dict(zip(self.candidate_names, tensors[nu : nu + nc], strict=True))
        return self.inner(user, candidates, tensors[nu + nc])
