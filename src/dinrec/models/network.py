"""InterestNetwork: the pure nn.Module behind DIN and the Base Model, returning logits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dinrec.layers.attention import AttentionPooling, mask_scores
from dinrec.layers.embedding import EmbeddingBank
from dinrec.layers.mlp import MLP
from dinrec.layers.packing import Packed, pack
from dinrec.layers.pooling import pool_sequence, sequence_mask
from dinrec.layers.search import latest_matches, topk_by_similarity
from dinrec.layers.trim import sequence_groups, trim_padding
from dinrec.models.config import ModelConfig
from dinrec.schema import FeatureSchema, HistoryGroup

Batch = dict[str, torch.Tensor]
# In eval mode a batch is scored in slices of this many rows: every output row depends on its
# own inputs only (Dice and BatchNorm use moving statistics), and a slice's activations
# ([rows * T, H] in the activation unit) stay in cache; at 4096 rows they do not, and
# inference runs ~2x slower per sample.
EVAL_CHUNK_ROWS = 512


@dataclass(frozen=True)
class EmbeddedFeatures:
    """The MLP's inputs but the interest vector, each with R rows (InterestNetwork.embed_features).

    sparse: SparseFeat name -> embedding [R, E_c], in schema order (the candidate's included);
    pooled: each other VarLenSparseFeat pooled by its combiner [R, E]; dense: [R, D] each.
    """

    sparse: dict[str, torch.Tensor]
    pooled: list[torch.Tensor]
    dense: list[torch.Tensor]
    queries: tuple[str, ...]

    def query(self, features: Sequence[str] | None = None) -> torch.Tensor:
        """The candidate's embeddings concatenated [R, Eq] (item_id then cate_id, ...), of
        history_feature_list or of the `features` given (a history group's)."""
        names = self.queries if features is None else features
        return torch.cat([self.sparse[name] for name in names], dim=-1)

    def mlp_input(self, interest: torch.Tensor | Sequence[torch.Tensor] | None) -> torch.Tensor:
        """concat(sparse, pooled, each history's interest [R, Eq_g] in schema.groups
        order, dense) [R, mlp_input_dim]: the one order the MLP's first layer was built for."""
        if interest is None:
            middle: list[torch.Tensor] = []
        elif isinstance(interest, torch.Tensor):
            middle = [interest]
        else:
            middle = list(interest)
        return torch.cat([*self.sparse.values(), *self.pooled, *middle, *self.dense], dim=-1)


class InterestNetwork(nn.Module):
    """Embedding & MLP with the user's behaviors pooled by attention (DIN) or by sum (Base).

    forward(inputs) -> logits [B, 1], where inputs maps input names to tensors:
    SparseFeat [B] int64, VarLenSparseFeat [B, T] int64, DenseFeat [B] or [B, D] float32.

    MLP input = concat(every SparseFeat embedding (the candidate's included), each other
    VarLenSparseFeat pooled by its combiner, the interest vector [B, Eq], dense values).
    """

    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.schema = schema
        self.config = config
        with torch.random.fork_rng(devices=[]):
            # The config's seed fixes the initial weights without touching the caller's RNG.
            torch.manual_seed(config.seed)
            self.embeddings = EmbeddingBank(
                schema, init_std=config.init_std, sparse_grad=config.sparse_embeddings
            )
            # history_feature_list's unit is `attention` (the state-dict keys of a DeepCTR
            # model); each named history group's is group_attention[name]. Built in
            # schema.groups order, so a one-group model draws the same initial weights.
            self.attention: AttentionPooling | None = None
            self.group_attention = nn.ModuleDict()
            for group in schema.groups if config.history_pooling == "attention" else ():
                unit = AttentionPooling(
                    schema.group_query_dim(group),
                    config.att_hidden_size,
                    config.att_activation,
                    config.att_weight_normalization,
                    side_dim=group.side_dim,
                )
                if group.name:
                    self.group_attention[group.name] = unit
                else:
                    self.attention = unit
            self.mlp = MLP(
                schema.mlp_input_dim(),
                config.dnn_hidden_units,
                config.dnn_activation,
                use_bn=config.dnn_use_bn,
                dropout=config.dnn_dropout,
            )
            self.out = nn.Linear(self.mlp.out_dim, 1)
        self.search_index = {g.name: self._search_index(g) for g in schema.groups}
        self.sequence_groups = sequence_groups(schema)

    def _search_index(self, group: HistoryGroup) -> int | None:
        """Which feature of a history history_search="category" matches (index into
        group.features), checked against the schema; None for other modes."""
        config = self.config
        if config.history_search != "category":
            return None
        names = list(group.features)
        wanted = config.history_search_feature or names[-1]
        if wanted not in names:
            raise ValueError(f"history_search_feature={wanted!r} is not in "
                             f"{group.label} {names}")
        return names.index(wanted)

    def units(self) -> list[AttentionPooling]:
        """Every history's attention pooling, in schema.groups order."""
        first = [self.attention] if self.attention is not None else []
        return [*first, *(u for u in self.group_attention.values()
                          if isinstance(u, AttentionPooling))]

    def pooling_of(self, group: HistoryGroup) -> AttentionPooling | None:
        """The attention pooling of one history (None for the Base Model)."""
        if not group.name:
            return self.attention
        if group.name not in self.group_attention:  # the Base Model pools by sum / mean
            return None
        unit = self.group_attention[group.name]
        return unit if isinstance(unit, AttentionPooling) else None

    def _group(self, group: HistoryGroup | None) -> HistoryGroup:
        return self.schema.groups[0] if group is None else group

    def compile_dense(self, enabled: bool = True) -> bool:
        """Run the activation unit's MLP through torch.compile (optional; off by default).

        Only the dense attention MLP over packed behaviors is compiled (the embeddings stay
        eager; the head MLP gains nothing measurable). Returns whether compile is on; it
        falls back to eager, with one warning, wherever compiling fails.
        """
        if not self.units():
            return False
        for pooling in self.units():
            pooling.unit.compile_packed(enabled)
        return enabled

    def attention_bf16(self, enabled: bool = True) -> bool:
        """Multiply in bfloat16 inside the activation unit's hidden layers (optional; off by
        default). Returns whether it is on: only where the CPU multiplies bf16 natively
        (AVX512-BF16 or AMX) or the model is on a GPU; elsewhere bf16 is emulated, slower.
        """
        if not self.units():
            return False
        on_gpu = any(p.device.type == "cuda" for p in self.mlp.parameters())
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch
        native = any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
        use = enabled and (on_gpu or native)
        for pooling in self.units():
            pooling.unit.packed_bf16(use)
        return use

    # ----- pieces (each of one history: history_feature_list's unless `group` is given) ---
    def history_mask(self, inputs: Batch, group: HistoryGroup | None = None) -> torch.Tensor:
        """[B, T] bool: valid history slots (length input if declared, else id != 0)."""
        g = self._group(group)
        lengths = inputs[g.length_name] if g.length_name is not None else None
        return sequence_mask(inputs[g.columns[0].name], lengths)

    def behavior_weights(
        self, inputs: Batch, mask: torch.Tensor, group: HistoryGroup | None = None
    ) -> torch.Tensor | None:
        """Each behavior's own weight w_t [B, T] in the embeddings' dtype (exactly 0 at
        padding), or None for a history without weight_name.

        As DeepCTR's WeightedSequenceLayer gives them: the weight_name input as is, or
        softmax-normalised over the valid behaviors of `mask` (the history's, before any
        history_search) when the sequence's weight_norm is True (DeepCTR's default).
        """
        col = self._group(group).weighted
        if col is None:
            return None
        assert col.weight_name is not None
        raw = inputs[col.weight_name]
        raw = raw.reshape(mask.shape).to(self.out.weight.dtype)  # [B, T] ([B, T, 1] too)
        return mask_scores(raw, mask, col.weight_norm)

    def query(self, inputs: Batch, group: HistoryGroup | None = None) -> torch.Tensor:
        """Concatenated candidate embeddings [B, Eq] (item_id then cate_id, ...)."""
        g = self._group(group)
        return torch.cat([self.embeddings.lookup(c.name, inputs[c.name]) for c in g.queries], -1)

    def keys(self, inputs: Batch, group: HistoryGroup | None = None) -> torch.Tensor:
        """Concatenated behavior embeddings [B, T, Eq], aligned with query()."""
        g = self._group(group)
        return torch.cat([self.embeddings.lookup(c.name, inputs[c.name]) for c in g.columns], -1)

    def packed_keys(
        self, inputs: Batch, packed: Packed, group: HistoryGroup | None = None
    ) -> torch.Tensor:
        """Behavior embeddings of the valid positions only [N, Eq], aligned with query().

        Ids are packed before the lookup, so padded slots cost no lookup and no backward.
        """
        parts = [
            self.embeddings.lookup(c.name, packed.gather(inputs[c.name]))  # [N, E_c]
            for c in self._group(group).columns
        ]
        return torch.cat(parts, dim=-1)

    def packed_side(
        self, inputs: Batch, packed: Packed, group: HistoryGroup | None = None
    ) -> torch.Tensor | None:
        """A history's per-behavior values (VarLenDenseFeat) at the valid positions [N, S],
        in the embeddings' dtype; None when it has none."""
        g = self._group(group)
        if not g.side:
            return None
        dtype = self.out.weight.dtype
        parts = [packed.gather(inputs[c.name].reshape(*inputs[c.name].shape[:2], c.dimension))
                 for c in g.side]  # each [N, D_c]
        return torch.cat(parts, dim=-1).to(dtype)

    def select_behaviors(
        self, inputs: Batch, mask: torch.Tensor, query: torch.Tensor,
        keys: torch.Tensor | None = None, group: HistoryGroup | None = None,
    ) -> torch.Tensor:
        """The behaviors attention runs on: mask [B, T] narrowed by config.history_search.

        Args:
            inputs: the history id tensors [B, T] and the candidate's [B] (query features).
            mask: [B, T] bool, the valid behaviors.
            query: [B, Eq] the candidate's concatenated embeddings.
            keys: [B, T, Eq] the behaviors' embeddings when already at hand (serving);
                else "topk" looks up the valid ones.
            group: the history (history_feature_list's when None).

        Returns:
            [B, T] bool, at most history_search_k True per row (mask itself without search).
        """
        config = self.config
        if config.history_search is None:
            return mask
        g = self._group(group)
        k = config.history_search_k
        i = self.search_index.get(g.name)
        if i is not None:
            return latest_matches(mask, inputs[g.columns[i].name], inputs[g.queries[i].name], k)
        with torch.no_grad():  # a discrete choice: no gradient through the first stage
            if keys is None:
                packed = pack(mask)
                q_rows = query.index_select(0, packed.rows)  # [N, Eq]
                sims = packed.unpack((self.packed_keys(inputs, packed, g) * q_rows).sum(-1))
            else:
                sims = (keys * query.unsqueeze(1)).sum(-1)  # [B, T]
        return topk_by_similarity(mask, sims, k)

    def _attention_interest(
        self, inputs: Batch, query: torch.Tensor | None, group: HistoryGroup | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, Packed]:
        """(interest [B, Eq + S], packed weights [N], packing) of one history's attention."""
        g = self._group(group)
        pooling = self.pooling_of(g)
        assert pooling is not None
        q = self.query(inputs, g) if query is None else query
        mask = self.history_mask(inputs, g)  # [B, T]
        packed = pack(self.select_behaviors(inputs, mask, q, group=g))
        side = self.packed_side(inputs, packed, g)  # [N, S] or None
        behavior = self.behavior_weights(inputs, mask, g)  # [B, T] or None
        if behavior is not None:
            behavior = packed.gather(behavior.unsqueeze(-1)).squeeze(-1)  # [N]
        interest, weights = pooling.pool_packed(
            q, self.packed_keys(inputs, packed, g), packed, side, behavior)
        if side is not None:
            # The attended behaviors' own values, pooled by the same weights [B, S]: under
            # softmax weights (which sum to 1) the MLP could not see from the keys alone how
            # old the attended behaviors are, only which ones were attended.
            interest = torch.cat([interest, packed.sum_rows(weights.unsqueeze(-1) * side)], -1)
        return interest, weights, packed

    def interest(
        self, inputs: Batch, query: torch.Tensor | None = None,
        group: HistoryGroup | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(interest vector [B, Eq + S], per-behavior weights [B, T]) of one history: the
        pooled behavior embeddings, then its per-behavior values (VarLenDenseFeat, S wide)
        pooled by the same weights.

        The weights are each behavior's share of the interest: DIN's activation weight
        times the behavior's own weight (weight_name; 1 without). For the Base Model they
        are the behavior weights (1 per valid behavior without weight_name), over len for
        mean pooling.
        """
        g = self._group(group)
        if self.pooling_of(g) is not None:
            interest, weights, packed = self._attention_interest(inputs, query, g)
            return interest, packed.unpack(weights)
        mask = self.history_mask(inputs, g)
        keys = self.keys(inputs, g)
        if g.side:
            side = [inputs[c.name].reshape(*mask.shape, c.dimension) for c in g.side]
            keys = torch.cat([keys, *(v.to(keys.dtype) for v in side)], dim=-1)  # [B, T, Eq+S]
        behavior = self.behavior_weights(inputs, mask, g)  # [B, T] or None
        # As DeepCTR's WeightedSequenceLayer then SequencePoolingLayer: sum_t w_t k_t
        # (over len for mean); behavior is already normalised, so weight_norm=False here.
        pooled = pool_sequence(keys, mask, self.config.history_pooling, behavior, False)
        weights = mask.to(keys.dtype) if behavior is None else behavior
        if self.config.history_pooling == "mean":
            count = mask.sum(dim=1, keepdim=True).clamp_min(1)  # [B, 1] valid behaviors
            weights = weights / count.to(weights.dtype)
        return pooled, weights

    def embed_features(
        self,
        user: Batch,
        candidates: Batch | None = None,
        to_rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> EmbeddedFeatures:
        """Every MLP input but the interest vector, embedded, pooled and cast: the one
        feature assembly behind forward() and serving's broadcast pass (one user, C
        candidates), so the two cannot diverge.

        Args:
            user: every input, [U] / [U, T] / [U, D] rows (with `candidates` None: every
                input of the batch, query features included, and R = U rows out).
            candidates: the query features of every history [C], or None: taken from `user`.
            to_rows: maps a user-side part [U, ...] to the output's R rows [R, ...] (serving
                broadcasts U = 1 over C candidates); None: the identity.
        """
        schema = self.schema
        rows = to_rows if to_rows is not None else _same_rows
        # Every feature given per candidate (the query features of each attended history).
        per_candidate = set(candidates) if candidates is not None else set()
        sparse: dict[str, torch.Tensor] = {}
        for col in schema.sparse:
            if candidates is not None and col.name in per_candidate:
                sparse[col.name] = self.embeddings.lookup(col.name, candidates[col.name])  # [C, E]
            else:
                sparse[col.name] = rows(self.embeddings.lookup(col.name, user[col.name]))
        pooled = []
        for seq in schema.pooled:
            ids = user[seq.name]  # [U, T]
            lengths = user[seq.length_name] if seq.length_name is not None else None
            weights = user[seq.weight_name] if seq.weight_name is not None else None
            emb = self.embeddings.lookup(seq.name, ids)  # [U, T, E]
            pooled.append(rows(pool_sequence(
                emb, sequence_mask(ids, lengths), seq.combiner, weights, seq.weight_norm
            )))  # [R, E]
        # Embeddings set the dtype; a model of dense inputs only takes them as float32.
        first = next(iter([*sparse.values(), *pooled]), None)
        dtype = first.dtype if first is not None else torch.float32
        dense = []
        for feat in schema.dense:
            value = user[feat.name]
            if feat.transform_fn is not None:
                value = feat.transform_fn(value)
            dense.append(rows(value.reshape(value.shape[0], feat.dimension).to(dtype)))  # [R, D]
        return EmbeddedFeatures(sparse, pooled, dense, tuple(c.name for c in schema.queries))

    def features(self, inputs: Batch) -> torch.Tensor:
        """The MLP input [B, mlp_input_dim]."""
        embedded = self.embed_features(inputs)
        interests = []
        for group in self.schema.groups:
            if self.pooling_of(group) is not None:
                query = embedded.query(group.features)  # [B, Eq_g]
                interests.append(self._attention_interest(inputs, query, group)[0])
            else:
                interests.append(self.interest(inputs, group=group)[0])
        return embedded.mlp_input(interests)

    def forward(self, inputs: Batch) -> torch.Tensor:
        rows = next(iter(inputs.values())).shape[0] if inputs else 0
        if self.training or rows <= EVAL_CHUNK_ROWS:
            return self.out(self.mlp(self.features(trim_padding(inputs, self.sequence_groups))))
        return torch.cat([
            self.out(self.mlp(self.features(trim_padding(
                {k: v[lo : lo + EVAL_CHUNK_ROWS] for k, v in inputs.items()},
                self.sequence_groups))))
            for lo in range(0, rows, EVAL_CHUNK_ROWS)
        ])


def _same_rows(t: torch.Tensor) -> torch.Tensor:
    return t
