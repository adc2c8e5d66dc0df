"""InterestNetwork: the pure nn.Module behind DIN and the Base Model, returning logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dinrec.layers.attention import AttentionPooling
from dinrec.layers.embedding import EmbeddingBank
from dinrec.layers.mlp import MLP
from dinrec.layers.packing import Packed, pack
from dinrec.layers.pooling import pool_sequence, sequence_mask
from dinrec.layers.search import latest_matches, topk_by_similarity
from dinrec.layers.trim import sequence_groups, trim_padding
from dinrec.models.config import ModelConfig
from dinrec.schema import FeatureSchema

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

    def query(self) -> torch.Tensor:
        """The candidate's embeddings concatenated [R, Eq] (item_id then cate_id, ...)."""
        return torch.cat([self.sparse[name] for name in self.queries], dim=-1)

    def mlp_input(self, interest: torch.Tensor | None) -> torch.Tensor:
        """concat(sparse, pooled, interest [R, Eq] when there is a history, dense)
        [R, mlp_input_dim]: the one order the MLP's first layer was built for."""
        middle = [interest] if interest is not None else []
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
            self.attention: AttentionPooling | None = None
            if schema.history and config.history_pooling == "attention":
                self.attention = AttentionPooling(
                    schema.query_dim,
                    config.att_hidden_size,
                    config.att_activation,
                    config.att_weight_normalization,
                )
            self.mlp = MLP(
                schema.mlp_input_dim(),
                config.dnn_hidden_units,
                config.dnn_activation,
                use_bn=config.dnn_use_bn,
                dropout=config.dnn_dropout,
            )
            self.out = nn.Linear(self.mlp.out_dim, 1)
        self.search_index = self._search_index()
        self.sequence_groups = sequence_groups(schema)

    def _search_index(self) -> int | None:
        """Which history feature history_search="category" matches (index into
        schema.history / schema.queries), checked against the schema; None for other modes."""
        config = self.config
        if config.history_search != "category" or not self.schema.history:
            return None
        names = [c.name for c in self.schema.queries]
        wanted = config.history_search_feature or names[-1]
        if wanted not in names:
            raise ValueError(f"history_search_feature={wanted!r} is not in "
                             f"history_feature_list {names}")
        return names.index(wanted)

    def compile_dense(self, enabled: bool = True) -> bool:
        """Run the activation unit's MLP through torch.compile (optional; off by default).

        Only the dense attention MLP over packed behaviors is compiled (the embeddings stay
        eager; the head MLP gains nothing measurable). Returns whether compile is on; it
        falls back to eager, with one warning, wherever compiling fails.
        """
        if self.attention is None:
            return False
        self.attention.unit.compile_packed(enabled)
        return enabled

    def attention_bf16(self, enabled: bool = True) -> bool:
        """Multiply in bfloat16 inside the activation unit's hidden layers (optional; off by
        default). Returns whether it is on: only where the CPU multiplies bf16 natively
        (AVX512-BF16 or AMX) or the model is on a GPU; elsewhere bf16 is emulated, slower.
        """
        if self.attention is None:
            return False
        on_gpu = any(p.device.type == "cuda" for p in self.attention.parameters())
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch
        native = any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
        use = enabled and (on_gpu or native)
        self.attention.unit.packed_bf16(use)
        return use

    # ----- pieces ------------------------------------------------------------------------
    def history_mask(self, inputs: Batch) -> torch.Tensor:
        """[B, T] bool: valid history slots (length input if declared, else id != 0)."""
        first = self.schema.history[0]
        length_name = self.schema.history_length_name
        lengths = inputs[length_name] if length_name is not None else None
        return sequence_mask(inputs[first.name], lengths)

    def query(self, inputs: Batch) -> torch.Tensor:
        """Concatenated candidate embeddings [B, Eq] (item_id then cate_id, ...)."""
        parts = [self.embeddings.lookup(c.name, inputs[c.name]) for c in self.schema.queries]
        return torch.cat(parts, dim=-1)

    def keys(self, inputs: Batch) -> torch.Tensor:
        """Concatenated behavior embeddings [B, T, Eq], aligned with query()."""
        parts = [self.embeddings.lookup(c.name, inputs[c.name]) for c in self.schema.history]
        return torch.cat(parts, dim=-1)

    def packed_keys(self, inputs: Batch, packed: Packed) -> torch.Tensor:
        """Behavior embeddings of the valid positions only [N, Eq], aligned with query().

        Ids are packed before the lookup, so padded slots cost no lookup and no backward.
        """
        parts = [
            self.embeddings.lookup(c.name, packed.gather(inputs[c.name]))  # [N, E_c]
            for c in self.schema.history
        ]
        return torch.cat(parts, dim=-1)

    def select_behaviors(
        self, inputs: Batch, mask: torch.Tensor, query: torch.Tensor,
        keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The behaviors attention runs on: mask [B, T] narrowed by config.history_search.

        Args:
            inputs: the history id tensors [B, T] and the candidate's [B] (query features).
            mask: [B, T] bool, the valid behaviors.
            query: [B, Eq] the candidate's concatenated embeddings.
            keys: [B, T, Eq] the behaviors' embeddings when already at hand (serving);
                else "topk" looks up the valid ones.

        Returns:
            [B, T] bool, at most history_search_k True per row (mask itself without search).
        """
        config = self.config
        if config.history_search is None:
            return mask
        k = config.history_search_k
        if self.search_index is not None:
            i = self.search_index
            return latest_matches(mask, inputs[self.schema.history[i].name],
                                  inputs[self.schema.queries[i].name], k)
        with torch.no_grad():  # a discrete choice: no gradient through the first stage
            if keys is None:
                packed = pack(mask)
                q_rows = query.index_select(0, packed.rows)  # [N, Eq]
                sims = packed.unpack((self.packed_keys(inputs, packed) * q_rows).sum(-1))
            else:
                sims = (keys * query.unsqueeze(1)).sum(-1)  # [B, T]
        return topk_by_similarity(mask, sims, k)

    def _attention_interest(
        self, inputs: Batch, query: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, Packed]:
        """(interest [B, Eq], packed weights [N], packing) of the attention pooling."""
        assert self.attention is not None
        q = self.query(inputs) if query is None else query
        packed = pack(self.select_behaviors(inputs, self.history_mask(inputs), q))
        interest, weights = self.attention.pool_packed(q, self.packed_keys(inputs, packed), packed)
        return interest, weights, packed

    def interest(
        self, inputs: Batch, query: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(interest vector [B, Eq], per-behavior weights [B, T]).

        For the Base Model the weights are the mask (1 per valid behavior; 1/len for mean).
        """
        if self.attention is not None:
            interest, weights, packed = self._attention_interest(inputs, query)
            return interest, packed.unpack(weights)
        mask = self.history_mask(inputs)
        keys = self.keys(inputs)
        pooled = pool_sequence(keys, mask, self.config.history_pooling)
        weights = mask.to(keys.dtype)
        if self.config.history_pooling == "mean":
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
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
            candidates: the query features (schema.queries) [C], or None: taken from `user`.
            to_rows: maps a user-side part [U, ...] to the output's R rows [R, ...] (serving
                broadcasts U = 1 over C candidates); None: the identity.
        """
        schema = self.schema
        rows = to_rows if to_rows is not None else _same_rows
        per_candidate = {c.name for c in schema.queries} if candidates is not None else set()
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
        interest = None
        if self.schema.history and self.attention is not None:
            interest = self._attention_interest(inputs, embedded.query())[0]
        elif self.schema.history:
            interest = self.interest(inputs)[0]
        return embedded.mlp_input(interest)

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
