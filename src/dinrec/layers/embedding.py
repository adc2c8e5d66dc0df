"""EmbeddingBank: one nn.Embedding per resolved table, looked up by feature name."""

from __future__ import annotations

import torch
from torch import nn

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.schema import FeatureSchema


def module_key(table: str) -> str:
    """ModuleDict keys may not contain '.'; table names from users may."""
    return table.replace(".", "__")


class EmbeddingBank(nn.Module):
    """The embedding tables of a schema; columns sharing an embedding_name share a table.

    Args:
        schema: the resolved FeatureSchema.
        init_std: std of the normal initializer (DeepCTR's default 1e-4), unless a column of
            the table gives embeddings_initializer (a callable filling the weight in place).
        sparse_grad: produce sparse gradients (for SparseAdam / SGD on huge tables).

    Shapes: lookup(column, ids [...]) -> [..., E] with E the table's dim.
    """

    def __init__(
        self, schema: FeatureSchema, init_std: float = 1e-4, sparse_grad: bool = False
    ) -> None:
        super().__init__()
        self.tables = nn.ModuleDict()
        self.table_of: dict[str, str] = {}
        for spec in schema.tables.values():
            emb = nn.Embedding(spec.num_embeddings, spec.dim, sparse=sparse_grad)
            custom = [
                c.embeddings_initializer
                for c in schema.columns
                if isinstance(c, (SparseFeat, VarLenSparseFeat))
                and c.table == spec.name
                and c.embeddings_initializer is not None
            ]
            with torch.no_grad():
                if custom:
                    custom[0](emb.weight)
                else:
                    nn.init.normal_(emb.weight, mean=0.0, std=init_std)
            emb.weight.requires_grad_(spec.trainable)
            self.tables[module_key(spec.name)] = emb
            for feature in spec.features:
                self.table_of[feature] = spec.name

    def table(self, name: str) -> nn.Embedding:
        """The nn.Embedding of a table by its embedding_name."""
        emb = self.tables[module_key(name)]
        assert isinstance(emb, nn.Embedding)
        return emb

    def lookup(self, feature: str, ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.table_of[feature])(ids)
