"""FeatureSchema: feature columns resolved into embedding tables and model input roles."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dinrec.feature_column import (
    DenseFeat,
    FeatureColumn,
    SparseFeat,
    VarLenSparseFeat,
    columns_from_dicts,
    columns_to_dicts,
)

HISTORY_PREFIX = "hist_"


@dataclass(frozen=True)
class TableSpec:
    """One embedding table and the columns that read it (torchrec's EmbeddingConfig idea).

    Args:
        name: the embedding_name shared by its columns.
        num_embeddings: rows; the largest vocabulary_size declared by its columns.
        dim: width; the first declared column's embedding_dim (a conflict warns).
        features: names of the columns that look ids up in this table, in declared order.
        trainable: False only if every sharing column says so.
    """

    name: str
    num_embeddings: int
    dim: int
    features: tuple[str, ...]
    trainable: bool


@dataclass(frozen=True)
class FeatureSchema:
    """Columns sorted into DIN's roles, with every derived size taken from the tables.

    Roles: `sparse` (one id -> embedding, fed to the MLP; queries come from here),
    `history` (the hist_<f> VarLenSparseFeats, in history_feature_list order, pooled by
    attention in DIN or by sum in the Base Model), `pooled` (other VarLenSparseFeats,
    pooled by their combiner) and `dense`.
    """

    columns: tuple[FeatureColumn, ...]
    history_feature_list: tuple[str, ...]
    tables: dict[str, TableSpec]

    @classmethod
    def resolve(
        cls, columns: Sequence[FeatureColumn], history_feature_list: Sequence[str]
    ) -> FeatureSchema:
        """Validate the columns and resolve shared tables; errors name the column at fault."""
        columns = tuple(columns)
        if not columns:
            raise ValueError("no feature columns given")
        names: set[str] = set()
        for col in columns:
            if not isinstance(col, (SparseFeat, VarLenSparseFeat, DenseFeat)):
                raise ValueError(
                    f"unknown feature column type {type(col).__name__}; expected SparseFeat, "
                    "VarLenSparseFeat or DenseFeat"
                )
            if col.name in names:
                raise ValueError(f"feature {col.name!r} is declared twice")
            names.add(col.name)
        if isinstance(history_feature_list, str):
            raise ValueError("history_feature_list must be a list of names, not a string")
        history = tuple(history_feature_list)
        if len(set(history)) != len(history):
            raise ValueError(f"history_feature_list has duplicates: {list(history)}")
        tables = _resolve_tables(columns)
        schema = cls(columns=columns, history_feature_list=history, tables=tables)
        schema._check_history()
        return schema

    # ----- roles -------------------------------------------------------------------------
    @property
    def sparse(self) -> tuple[SparseFeat, ...]:
        return tuple(c for c in self.columns if isinstance(c, SparseFeat))

    @property
    def dense(self) -> tuple[DenseFeat, ...]:
        return tuple(c for c in self.columns if isinstance(c, DenseFeat))

    @property
    def history(self) -> tuple[VarLenSparseFeat, ...]:
        by_name = {c.name: c for c in self.columns if isinstance(c, VarLenSparseFeat)}
        return tuple(by_name[HISTORY_PREFIX + f] for f in self.history_feature_list)

    @property
    def pooled(self) -> tuple[VarLenSparseFeat, ...]:
        hist = {HISTORY_PREFIX + f for f in self.history_feature_list}
        return tuple(
            c for c in self.columns if isinstance(c, VarLenSparseFeat) and c.name not in hist
        )

    @property
    def queries(self) -> tuple[SparseFeat, ...]:
        by_name = {c.name: c for c in self.sparse}
        return tuple(by_name[f] for f in self.history_feature_list)

    def column(self, name: str) -> FeatureColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"no feature column named {name!r}")

    def dim(self, col: SparseFeat | VarLenSparseFeat) -> int:
        """Embedding width of a column, from its resolved table."""
        return self.tables[col.table].dim

    # ----- derived sizes -----------------------------------------------------------------
    @property
    def query_dim(self) -> int:
        """Width of the concatenated query / key vector Eq (DeepCTR concatenates features)."""
        return sum(self.dim(c) for c in self.queries)

    @property
    def max_len(self) -> int:
        """T, the padded history length (0 without history features)."""
        hist = self.history
        return hist[0].maxlen if hist else 0

    @property
    def history_length_name(self) -> str | None:
        """The length input that masks the history, or None for the id-0 mask."""
        hist = self.history
        return hist[0].length_name if hist else None

    @property
    def dense_dim(self) -> int:
        return sum(c.dimension for c in self.dense)

    def mlp_input_dim(self) -> int:
        """Width of concat(sparse embeddings, pooled sequences, interest, dense)."""
        sparse = sum(self.dim(c) for c in self.sparse)
        pooled = sum(self.dim(c) for c in self.pooled)
        return sparse + pooled + self.query_dim + self.dense_dim

    # ----- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": columns_to_dicts(self.columns),
            "history_feature_list": list(self.history_feature_list),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        unknown = set(data) - {"columns", "history_feature_list"}
        if unknown:
            raise ValueError(f"schema has unknown keys {sorted(unknown)}")
        with warnings.catch_warnings():
            # A saved schema already warned when it was first resolved.
            warnings.simplefilter("ignore", UserWarning)
            return cls.resolve(columns_from_dicts(data["columns"]), data["history_feature_list"])

    # ----- checks ------------------------------------------------------------------------
    def _check_history(self) -> None:
        sparse = {c.name: c for c in self.sparse}
        varlen = {c.name: c for c in self.columns if isinstance(c, VarLenSparseFeat)}
        for f in self.history_feature_list:
            if f not in sparse:
                raise ValueError(
                    f"history feature {f!r} needs a SparseFeat named {f!r} (the candidate)"
                )
            key = HISTORY_PREFIX + f
            if key not in varlen:
                raise ValueError(
                    f"history feature {f!r} needs a VarLenSparseFeat named {key!r} "
                    "(the behavior sequence)"
                )
            qdim, kdim = self.dim(sparse[f]), self.dim(varlen[key])
            if qdim != kdim:
                raise ValueError(
                    f"candidate {f!r} (table {sparse[f].table!r}, dim {qdim}) and history "
                    f"{key!r} (table {varlen[key].table!r}, dim {kdim}) must have the same "
                    "embedding dim; give them the same embedding_name"
                )
        hist = self.history
        if len({c.maxlen for c in hist}) > 1:
            detail = ", ".join(f"{c.name}={c.maxlen}" for c in hist)
            raise ValueError(f"history features must share one maxlen, got {detail}")
        if len({c.length_name for c in hist}) > 1:
            detail = ", ".join(f"{c.name}={c.length_name!r}" for c in hist)
            raise ValueError(f"history features must share one length_name, got {detail}")


def _resolve_tables(columns: Sequence[FeatureColumn]) -> dict[str, TableSpec]:
    """Group sparse columns by embedding_name; size each table to its largest vocabulary."""
    groups: dict[str, list[SparseFeat | VarLenSparseFeat]] = {}
    for col in columns:
        if isinstance(col, (SparseFeat, VarLenSparseFeat)):
            groups.setdefault(col.table, []).append(col)
    tables: dict[str, TableSpec] = {}
    for name, cols in groups.items():
        first = cols[0]
        dim = int(first.embedding_dim)
        for other in cols[1:]:
            if int(other.embedding_dim) != dim:
                warnings.warn(
                    f"columns {first.name!r} (embedding_dim {dim}) and {other.name!r} "
                    f"(embedding_dim {other.embedding_dim}) share table {name!r}; using "
                    f"{dim}, the dim of the first declared column {first.name!r}",
                    UserWarning,
                    stacklevel=4,
                )
        hashed = {c.use_hash for c in cols}
        if len(hashed) > 1:
            raise ValueError(
                f"columns sharing table {name!r} disagree on use_hash: "
                + ", ".join(f"{c.name}={c.use_hash}" for c in cols)
            )
        tables[name] = TableSpec(
            name=name,
            num_embeddings=max(c.vocabulary_size for c in cols),
            dim=dim,
            features=tuple(c.name for c in cols),
            trainable=any(c.trainable for c in cols),
        )
    return tables
