"""FeatureSchema: feature columns resolved into embedding tables and model input roles."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from dinrec.feature_column import (
    COLUMN_TYPES,
    DenseFeat,
    FeatureColumn,
    SparseFeat,
    VarLenSparseFeat,
    columns_from_dicts,
    columns_to_dicts,
)
from dinrec.hashing import (
    HASH_SCHEME,
    HASH_SCHEMES,
    LEGACY_HASH_SCHEME,
    hash_into_rows,
    legacy_blake2b_ids,
    lookup_vocabulary_file,
)
from dinrec.history_groups import (
    HISTORY_PREFIX,
    HistoryGroup,
    check_group_spec,
    resolve_groups,
)

__all__ = ["HISTORY_PREFIX", "FeatureSchema", "HistoryGroup", "TableSpec"]
# How columns sharing a table settle its dim / trainable (schema.json "shared_tables"):
# DeepCTR's last column wins; schemas saved before the rule was recorded used the first.
TABLE_RULE = "deepctr-last"
LEGACY_TABLE_RULE = "first-declared"
TABLE_RULES = (TABLE_RULE, LEGACY_TABLE_RULE)


@dataclass(frozen=True)
class TableSpec:
    """One embedding table and the columns that read it (torchrec's EmbeddingConfig idea).

    Args:
        name: the embedding_name shared by its columns.
        num_embeddings: rows; the largest vocabulary_size declared by its columns.
        dim: width, from the column `settings_from` (DeepCTR's last; a conflict warns).
        features: names of the columns that look ids up in this table, in declared order.
        trainable: `settings_from`'s trainable (a conflict warns).
        settings_from: the column whose embedding_dim, trainable and
            embeddings_initializer the table takes.
    """

    name: str
    num_embeddings: int
    dim: int
    features: tuple[str, ...]
    trainable: bool
    settings_from: str = ""


@dataclass(frozen=True)
class FeatureSchema:
    """Columns sorted into DIN's roles, with every derived size taken from the tables.

    Roles: `sparse` (one id -> embedding, fed to the MLP; queries come from here),
    `history` (the hist_<f> VarLenSparseFeats, in history_feature_list order, pooled by
    attention in DIN or by sum in the Base Model), `pooled` (other VarLenSparseFeats,
    pooled by their combiner) and `dense`. `id_hash` and `table_rule` record how raw ids
    are hashed and shared tables settled, so a saved schema reads back as it was trained.
    `history_groups` (dinrec) names further attended histories, `<group>_hist_<f>`
    (see dinrec.history_groups); `groups` lists every attended history, DeepCTR's first.
    """

    columns: tuple[FeatureColumn, ...]
    history_feature_list: tuple[str, ...]
    tables: dict[str, TableSpec]
    id_hash: str = HASH_SCHEME
    table_rule: str = TABLE_RULE
    history_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def resolve(
        cls,
        columns: Sequence[FeatureColumn],
        history_feature_list: Sequence[str],
        *,
        id_hash: str = HASH_SCHEME,
        table_rule: str = TABLE_RULE,
        history_groups: Mapping[str, Sequence[str]] | None = None,
    ) -> FeatureSchema:
        """Validate the columns and resolve shared tables; errors name the column at fault."""
        columns = tuple(columns)
        if not columns:
            raise ValueError("no feature columns given")
        names: set[str] = set()
        for col in columns:
            if not isinstance(col, COLUMN_TYPES):
                raise ValueError(
                    f"unknown feature column type {type(col).__name__}; expected SparseFeat, "
                    "VarLenSparseFeat, DenseFeat or VarLenDenseFeat"
                )
            if col.name in names:
                raise ValueError(f"feature {col.name!r} is declared twice")
            names.add(col.name)
        if isinstance(history_feature_list, str):
            raise ValueError("history_feature_list must be a list of names, not a string")
        history = tuple(history_feature_list)
        if len(set(history)) != len(history):
            raise ValueError(f"history_feature_list has duplicates: {list(history)}")
        if id_hash not in HASH_SCHEMES:
            raise ValueError(f"unknown id_hash {id_hash!r}; valid: {HASH_SCHEMES}")
        groups = check_group_spec(history, history_groups)
        tables = _resolve_tables(columns, table_rule)
        schema = cls(columns=columns, history_feature_list=history, tables=tables,
                     id_hash=id_hash, table_rule=table_rule, history_groups=groups)
        schema._check_history()
        return schema

    # ----- roles -------------------------------------------------------------------------
    @property
    def sparse(self) -> tuple[SparseFeat, ...]:
        return tuple(c for c in self.columns if isinstance(c, SparseFeat))

    @property
    def dense(self) -> tuple[DenseFeat, ...]:
        return tuple(c for c in self.columns if isinstance(c, DenseFeat))

    @cached_property
    def groups(self) -> tuple[HistoryGroup, ...]:
        """Every attended history: history_feature_list's (name "") first, then the named
        history_groups in declared order."""
        return resolve_groups(self.columns, self.history_feature_list, self.history_groups)

    @property
    def history(self) -> tuple[VarLenSparseFeat, ...]:
        """DeepCTR's history: the hist_<f> sequences of history_feature_list."""
        first = self.groups[0] if self.groups else None
        return first.columns if first is not None and not first.name else ()

    @property
    def pooled(self) -> tuple[VarLenSparseFeat, ...]:
        hist = {c.name for g in self.groups for c in g.columns}
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

    def rows(self, col: SparseFeat | VarLenSparseFeat) -> int:
        """Rows of the table a column reads: its ids must lie in [0, rows)."""
        return self.tables[col.table].num_embeddings

    def hash_ids(self, col: SparseFeat | VarLenSparseFeat, values: Any) -> np.ndarray:
        """Raw values of a use_hash column -> int64 rows of its table (any shape).

        Through its vocabulary_path file when it has one (unknown values: 0), else hashed
        into the table's rows (padding "0" stays 0), as every column of the table is.
        """
        if col.vocabulary_path is not None:
            ids = lookup_vocabulary_file(col.vocabulary_path, values, col.name)
            rows = self.rows(col)
            if ids.size and (ids.min() < 0 or ids.max() >= rows):
                bad = int(ids.max()) if ids.max() >= rows else int(ids.min())
                raise ValueError(
                    f"feature {col.name!r}: vocabulary_path {col.vocabulary_path!r} maps a "
                    f"value to id {bad}, outside its table {col.table!r} [0, {rows})"
                )
            return ids
        if self.id_hash == LEGACY_HASH_SCHEME:
            return legacy_blake2b_ids(values, col.vocabulary_size)
        try:
            return hash_into_rows(values, self.rows(col))
        except ValueError as err:
            raise ValueError(f"feature {col.name!r} (use_hash=True): {err}") from None

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

    def group_query_dim(self, group: HistoryGroup) -> int:
        """Eq of one attended history: its candidate features' widths summed."""
        return sum(self.dim(c) for c in group.queries)

    def mlp_input_dim(self) -> int:
        """Width of concat(sparse embeddings, pooled sequences, interests, dense)."""
        sparse = sum(self.dim(c) for c in self.sparse)
        pooled = sum(self.dim(c) for c in self.pooled)
        # Each history's interest: its pooled keys [Eq_g] and pooled per-behavior values [S_g].
        interests = sum(self.group_query_dim(g) + g.side_dim for g in self.groups)
        return sparse + pooled + interests + self.dense_dim

    # ----- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "columns": columns_to_dicts(self.columns),
            "history_feature_list": list(self.history_feature_list),
            "id_hash": self.id_hash,
            "shared_tables": self.table_rule,
        }
        if self.history_groups:  # absent for a DeepCTR schema: its JSON stays as it was
            out["history_groups"] = {name: list(f) for name, f in self.history_groups}
        if self._weighted_histories():
            out["history_weights"] = "used"  # see from_dict
        return out

    def _weighted_histories(self) -> list[str]:
        """The attended sequences that name a weight_name."""
        return [c.name for g in self.groups for c in g.columns if c.weight_name is not None]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        """Inverse of to_dict. A schema without "id_hash" / "shared_tables" was saved before
        they were recorded, and reads back with the rules of then (blake2b into each
        column's vocabulary_size; the first declared dim), so its weights still fit."""
        known = {"columns", "history_feature_list", "id_hash", "shared_tables", "history_groups",
                 "history_weights"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"schema has unknown keys {sorted(unknown)}")
        columns = columns_from_dicts(data["columns"])

        def resolve(cols: list[FeatureColumn]) -> FeatureSchema:
            with warnings.catch_warnings():
                # A saved schema already warned when it was first resolved.
                warnings.simplefilter("ignore", UserWarning)
                return cls.resolve(
                    cols, data["history_feature_list"],
                    id_hash=data.get("id_hash", LEGACY_HASH_SCHEME),
                    table_rule=data.get("shared_tables", LEGACY_TABLE_RULE),
                    history_groups=data.get("history_groups"),
                )

        schema = resolve(columns)
        weighted = schema._weighted_histories()
        if weighted and data.get("history_weights") != "used":
            # Saved before DIN used a history's weight_name (it was read and ignored, as
            # DeepCTR's DIN does): the weights were trained without it, so it stays unused.
            warnings.warn(
                f"this schema was saved before dinrec used weight_name on history sequences "
                f"({', '.join(map(repr, weighted))}): their weights stay unused, as when the "
                "model was trained; train again to use them", UserWarning, stacklevel=2)
            names = set(weighted)
            schema = resolve([dataclasses.replace(c, weight_name=None)
                              if isinstance(c, VarLenSparseFeat) and c.name in names else c
                              for c in columns])
        return schema

    # ----- checks ------------------------------------------------------------------------
    def _check_history(self) -> None:
        for group in self.groups:  # resolving checks names, maxlen and length_name
            for f, query, key in zip(group.features, group.queries, group.columns, strict=True):
                qdim, kdim = self.dim(query), self.dim(key)
                if qdim != kdim:
                    raise ValueError(
                        f"candidate {f!r} (table {query.table!r}, dim {qdim}) and history "
                        f"{key.name!r} (table {key.table!r}, dim {kdim}) must have the same "
                        "embedding dim; give them the same embedding_name"
                    )


def _resolve_tables(
    columns: Sequence[FeatureColumn], rule: str = TABLE_RULE
) -> dict[str, TableSpec]:
    """Group sparse columns by embedding_name; size each table to its largest vocabulary.

    Dim, trainable and initializer come from one column of the table: under TABLE_RULE the
    last in DeepCTR's build order (SparseFeats, then VarLenSparseFeats, each as declared),
    since DeepCTR and DeepCTR-Torch build one Embedding per column into a dict keyed by
    embedding_name and the last one written stays; under LEGACY_TABLE_RULE (schemas saved
    before the rule was recorded) the first declared dim, trainable if any column is.
    """
    if rule not in TABLE_RULES:
        raise ValueError(f"unknown shared-table rule {rule!r}; valid: {TABLE_RULES}")
    # Tables keep the declared order of their first column: it fixes the order in which
    # they draw their initial weights from the seeded RNG.
    groups: dict[str, list[SparseFeat | VarLenSparseFeat]] = {}
    for col in columns:
        if isinstance(col, (SparseFeat, VarLenSparseFeat)):
            groups.setdefault(col.table, []).append(col)
    tables: dict[str, TableSpec] = {}
    for name, cols in groups.items():
        _check_shared_hashing(name, cols)
        rows = max(c.vocabulary_size for c in cols)
        if rule == TABLE_RULE:
            # DeepCTR's build order: SparseFeats, then VarLenSparseFeats (sort is stable).
            cols = sorted(cols, key=lambda c: isinstance(c, VarLenSparseFeat))
            source = cols[-1]
            trainable = source.trainable
            _warn_disagreement(name, cols, source, "embedding_dim")
            _warn_disagreement(name, cols, source, "trainable")
        else:
            source = cols[0]  # the first declared
            trainable = any(c.trainable for c in cols)
        if len({c.vocabulary_size for c in cols}) > 1:
            sizes = ", ".join(f"{c.name!r} (vocabulary_size {c.vocabulary_size})" for c in cols)
            warnings.warn(
                f"columns {sizes} share table {name!r} with different vocabulary_size; the "
                f"table has {rows} rows (the largest) and every column's ids are checked "
                f"against [0, {rows})",
                UserWarning,
                stacklevel=5,
            )
        tables[name] = TableSpec(
            name=name,
            num_embeddings=rows,
            dim=int(source.embedding_dim),
            features=tuple(c.name for c in columns if c in cols),
            trainable=trainable,
            settings_from=source.name,
        )
    return tables


def _warn_disagreement(
    table: str, cols: Sequence[SparseFeat | VarLenSparseFeat],
    source: SparseFeat | VarLenSparseFeat, attr: str,
) -> None:
    chosen = getattr(source, attr)
    if all(getattr(c, attr) == chosen for c in cols):
        return
    detail = ", ".join(f"{c.name!r} ({attr} {getattr(c, attr)})" for c in cols)
    warnings.warn(
        f"columns {detail} share table {table!r}; it uses {attr} {chosen} of {source.name!r}, "
        "the last of them in DeepCTR's build order (SparseFeats, then VarLenSparseFeats), as "
        "DeepCTR does",
        UserWarning,
        stacklevel=6,
    )


def _check_shared_hashing(table: str, cols: Sequence[SparseFeat | VarLenSparseFeat]) -> None:
    """Columns of one table must turn a raw value into the same row."""
    for attr in ("use_hash", "vocabulary_path"):
        if len({getattr(c, attr) for c in cols}) > 1:
            raise ValueError(
                f"columns sharing table {table!r} disagree on {attr}: "
                + ", ".join(f"{c.name}={getattr(c, attr)!r}" for c in cols)
                + "; the same raw id would reach different rows"
            )
    for col in cols:
        if col.vocabulary_path is not None and not col.use_hash:
            warnings.warn(
                f"feature {col.name!r}: vocabulary_path is only read with use_hash=True (as in "
                "DeepCTR); its ids are taken as already encoded",
                UserWarning,
                stacklevel=6,
            )
