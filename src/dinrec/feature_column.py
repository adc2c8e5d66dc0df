"""Feature columns with DeepCTR's names, arguments and defaults.

A DeepCTR script keeps working after `deepctr` is renamed to `dinrec`:

Example:
    >>> from dinrec.feature_column import SparseFeat, VarLenSparseFeat, get_feature_names
    >>> cols = [SparseFeat("item_id", 4, embedding_dim=8),
    ...         VarLenSparseFeat(SparseFeat("hist_item_id", 4, embedding_dim=8,
    ...                                     embedding_name="item_id"), maxlen=4,
    ...                          length_name="seq_length")]
    >>> get_feature_names(cols)
    ['item_id', 'hist_item_id', 'seq_length']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GROUP_NAME = "default_group"
COMBINERS = ("sum", "mean", "max")


def _auto_dim(vocabulary_size: int) -> int:
    # DeepCTR's "auto" rule: 6 * int(vocabulary_size ** 0.25).
    return 6 * int(pow(vocabulary_size, 0.25))


@dataclass(frozen=True)
class SparseFeat:
    """A categorical feature: one id per sample, looked up in an embedding table.

    Args:
        name: input name.
        vocabulary_size: number of rows of the table; ids must lie in [0, vocabulary_size).
        embedding_dim: width of the embedding, or "auto" for 6 * int(vocabulary_size ** 0.25).
        use_hash: hash raw values (ints or strings) into vocabulary_size buckets; 0 stays 0.
        vocabulary_path: kept for DeepCTR compatibility; a dinrec Vocabulary maps raw ids.
        dtype: declared input dtype; ids are always carried as int64 inside dinrec.
        embeddings_initializer: None (normal with the model's init_std), or a callable that
            fills a weight tensor in place.
        embedding_name: table name; columns sharing it share one table.
        group_name: DeepCTR's feature group (kept, unused by DIN).
        trainable: whether the table is updated.
    """

    name: str
    vocabulary_size: int
    embedding_dim: Any = 4
    use_hash: bool = False
    vocabulary_path: str | None = None
    dtype: str = "int32"
    embeddings_initializer: Callable[..., Any] | None = None
    embedding_name: str | None = None
    group_name: str = DEFAULT_GROUP_NAME
    trainable: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SparseFeat name must be a non-empty string, got {self.name!r}")
        if isinstance(self.vocabulary_size, bool) or not isinstance(self.vocabulary_size, int):
            raise ValueError(
                f"SparseFeat {self.name!r}: vocabulary_size must be an int, "
                f"got {self.vocabulary_size!r}"
            )
        if self.vocabulary_size < 1:
            raise ValueError(
                f"SparseFeat {self.name!r}: vocabulary_size must be >= 1, "
                f"got {self.vocabulary_size}"
            )
        dim = self.embedding_dim
        if dim == "auto":
            object.__setattr__(self, "embedding_dim", _auto_dim(self.vocabulary_size))
        elif isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"SparseFeat {self.name!r}: embedding_dim must be a positive int or 'auto', "
                f"got {dim!r}"
            )
        if self.embedding_name is None:
            object.__setattr__(self, "embedding_name", self.name)
        if self.embeddings_initializer is not None and not callable(self.embeddings_initializer):
            raise ValueError(
                f"SparseFeat {self.name!r}: embeddings_initializer must be None or a callable"
            )

    @property
    def table(self) -> str:
        """The embedding table this column reads (its embedding_name)."""
        return str(self.embedding_name)


@dataclass(frozen=True)
class VarLenSparseFeat:
    """A list of ids per sample, padded with 0 to `maxlen` (e.g. a behavior history).

    Args:
        sparsefeat: the SparseFeat describing the ids and their table.
        maxlen: padded length T of the input, shape [B, T].
        combiner: "sum", "mean" or "max" pooling when the list is not a DIN history.
        length_name: optional input holding the true lengths [B]; else padding is id 0.
        weight_name: optional input of per-id weights [B, T] for weighted pooling.
        weight_norm: softmax-normalise the weights over the non-padded positions.
    """

    sparsefeat: SparseFeat
    maxlen: int
    combiner: str = "mean"
    length_name: str | None = None
    weight_name: str | None = None
    weight_norm: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sparsefeat, SparseFeat):
            raise ValueError(
                f"VarLenSparseFeat needs a SparseFeat, got {type(self.sparsefeat).__name__}"
            )
        if isinstance(self.maxlen, bool) or not isinstance(self.maxlen, int) or self.maxlen < 1:
            raise ValueError(
                f"VarLenSparseFeat {self.sparsefeat.name!r}: maxlen must be a positive int, "
                f"got {self.maxlen!r}"
            )
        if self.combiner not in COMBINERS:
            raise ValueError(
                f"VarLenSparseFeat {self.sparsefeat.name!r}: combiner must be one of "
                f"{COMBINERS}, got {self.combiner!r}"
            )

    # DeepCTR forwards the inner column's attributes.
    @property
    def name(self) -> str:
        return self.sparsefeat.name

    @property
    def vocabulary_size(self) -> int:
        return self.sparsefeat.vocabulary_size

    @property
    def embedding_dim(self) -> int:
        return int(self.sparsefeat.embedding_dim)

    @property
    def use_hash(self) -> bool:
        return self.sparsefeat.use_hash

    @property
    def vocabulary_path(self) -> str | None:
        return self.sparsefeat.vocabulary_path

    @property
    def dtype(self) -> str:
        return self.sparsefeat.dtype

    @property
    def embeddings_initializer(self) -> Callable[..., Any] | None:
        return self.sparsefeat.embeddings_initializer

    @property
    def embedding_name(self) -> str:
        return self.sparsefeat.table

    @property
    def group_name(self) -> str:
        return self.sparsefeat.group_name

    @property
    def trainable(self) -> bool:
        return self.sparsefeat.trainable

    @property
    def table(self) -> str:
        return self.sparsefeat.table


@dataclass(frozen=True)
class DenseFeat:
    """A real-valued feature of `dimension` floats per sample, fed to the MLP.

    Args:
        name: input name.
        dimension: width; the input is [B] when 1, else [B, dimension].
        dtype: declared dtype; carried as float32.
        transform_fn: optional callable applied to the input tensor inside the model.
    """

    name: str
    dimension: int = 1
    dtype: str = "float32"
    transform_fn: Callable[[Any], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DenseFeat name must be a non-empty string, got {self.name!r}")
        if isinstance(self.dimension, bool) or not isinstance(self.dimension, int):
            raise ValueError(f"DenseFeat {self.name!r}: dimension must be an int")
        if self.dimension < 1:
            raise ValueError(f"DenseFeat {self.name!r}: dimension must be >= 1")
        if self.transform_fn is not None and not callable(self.transform_fn):
            raise ValueError(f"DenseFeat {self.name!r}: transform_fn must be callable")


@dataclass(frozen=True)
class VarLenDenseFeat:
    """A real value per behavior of an attended history (dinrec; DeepCTR has no such column).

    It joins the history whose sequence columns share its name's prefix: `hist_<x>` joins
    DIN's history_feature_list, `<group>_hist_<x>` the history group `<group>` (DIN's
    history_groups), and enters that history's activation unit beside each behavior's
    embedding: the unit scores [k, q, k - q, k * q, s] for behavior value(s) s. Typical
    values: time since the behavior (e.g. log1p of hours), dwell time, a behavior's weight.

    Args:
        name: input name, with the prefix of the history it belongs to.
        maxlen: T, padded length of the input, as the history's columns.
        dimension: values per behavior: the input is [B, T] when 1, else [B, T, dimension].
        dtype: declared dtype; carried as float32.

    Example:
        >>> VarLenDenseFeat("hist_time_gap", maxlen=50).dimension
        1
    """

    name: str
    maxlen: int
    dimension: int = 1
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"VarLenDenseFeat name must be a non-empty string, got {self.name!r}")
        for attr in ("maxlen", "dimension"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"VarLenDenseFeat {self.name!r}: {attr} must be a positive int, got {value!r}"
                )


FeatureColumn = SparseFeat | VarLenSparseFeat | DenseFeat | VarLenDenseFeat
COLUMN_TYPES = (SparseFeat, VarLenSparseFeat, DenseFeat, VarLenDenseFeat)


def input_names(column: FeatureColumn) -> list[str]:
    """The input names one column reads, in DeepCTR's order (name, weight, length)."""
    names = [column.name]
    if isinstance(column, VarLenSparseFeat):
        if column.weight_name is not None:
            names.append(column.weight_name)
        if column.length_name is not None:
            names.append(column.length_name)
    return names


def get_feature_names(feature_columns: Iterable[FeatureColumn]) -> list[str]:
    """Input names in DeepCTR's order: each column's name, then a VarLenSparseFeat's
    weight_name and length_name; a name met twice (a shared length column) counts once."""
    seen: dict[str, None] = {}
    for column in feature_columns:
        if not isinstance(column, COLUMN_TYPES):
            raise ValueError(
                f"unknown feature column type {type(column).__name__}; expected SparseFeat, "
                "VarLenSparseFeat, DenseFeat or VarLenDenseFeat"
            )
        for name in input_names(column):
            seen.setdefault(name, None)
    return list(seen)


def columns_to_dicts(feature_columns: Sequence[FeatureColumn]) -> list[dict[str, Any]]:
    """JSON-ready description of the columns (callables are recorded by presence only)."""
    out: list[dict[str, Any]] = []
    for col in feature_columns:
        if isinstance(col, VarLenDenseFeat):
            out.append({"type": "VarLenDenseFeat", "name": col.name, "maxlen": col.maxlen,
                        "dimension": col.dimension, "dtype": col.dtype})
            continue
        if isinstance(col, DenseFeat):
            if col.transform_fn is not None:
                raise ValueError(
                    f"DenseFeat {col.name!r} has a transform_fn, which cannot be saved as "
                    "data; apply the transform to the inputs before fit and drop transform_fn"
                )
            out.append(
                {
                    "type": "DenseFeat",
                    "name": col.name,
                    "dimension": col.dimension,
                    "dtype": col.dtype,
                }
            )
            continue
        sparse = col.sparsefeat if isinstance(col, VarLenSparseFeat) else col
        entry: dict[str, Any] = {
            "name": sparse.name,
            "vocabulary_size": sparse.vocabulary_size,
            "embedding_dim": int(sparse.embedding_dim),
            "use_hash": sparse.use_hash,
            "vocabulary_path": sparse.vocabulary_path,
            "dtype": sparse.dtype,
            "embedding_name": sparse.table,
            "group_name": sparse.group_name,
            "trainable": sparse.trainable,
        }
        if isinstance(col, VarLenSparseFeat):
            out.append(
                {
                    "type": "VarLenSparseFeat",
                    "sparsefeat": entry,
                    "maxlen": col.maxlen,
                    "combiner": col.combiner,
                    "length_name": col.length_name,
                    "weight_name": col.weight_name,
                    "weight_norm": col.weight_norm,
                }
            )
        else:
            out.append({"type": "SparseFeat", **entry})
    return out


def columns_from_dicts(items: Sequence[dict[str, Any]]) -> list[FeatureColumn]:
    """Inverse of columns_to_dicts; unknown keys or types raise ValueError."""
    cols: list[FeatureColumn] = []
    for item in items:
        kind = item.get("type")
        body = {k: v for k, v in item.items() if k != "type"}
        try:
            if kind == "SparseFeat":
                cols.append(SparseFeat(**body))
            elif kind == "DenseFeat":
                cols.append(DenseFeat(**body))
            elif kind == "VarLenDenseFeat":
                cols.append(VarLenDenseFeat(**body))
            elif kind == "VarLenSparseFeat":
                inner = SparseFeat(**body.pop("sparsefeat"))
                cols.append(VarLenSparseFeat(inner, **body))
            else:
                raise ValueError(f"unknown feature column type {kind!r}")
        except TypeError as err:
            raise ValueError(f"bad feature column {item.get('name', item)!r}: {err}") from None
    return cols
