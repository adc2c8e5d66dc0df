"""One feature's raw ids -> int64 ids, through the bundle's vocabulary or checked as encoded.

A feature with a vocabulary maps raw ids through it (an unseen one becomes the unknown id 1,
never an error); a hashed one hashes them as in training; any other takes encoded ints within
its table, and anything else is a RequestError naming the field (a 422 over HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from dinrec.data.vocabulary import OOV_ID, PAD_ID, Vocabularies, Vocabulary
from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.schema import HISTORY_PREFIX, FeatureSchema

_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


class RequestError(ValueError):
    """A request value the model cannot take; `field` names it, e.g. "candidates[3]"."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class IdCodec:
    """One feature's raw ids -> int64 ids.

    Args:
        column: the feature's column.
        vocab: its vocabulary from the bundle, or None to take encoded ints.
        schema: the bundle's schema: the rows of the column's table bound encoded ids, and
            use_hash columns hash raw ids into them exactly as in training.
    """

    def __init__(
        self, column: SparseFeat | VarLenSparseFeat, vocab: Vocabulary | None,
        schema: FeatureSchema,
    ) -> None:
        self.name = column.name
        self.column = column
        self.schema = schema
        self.size = schema.rows(column)
        self.use_hash = column.use_hash
        self.vocab = vocab

    @property
    def missing_id(self) -> int:
        """The id of an absent value: unknown (1) through a vocabulary, else padding (0)."""
        return OOV_ID if self.vocab is not None else PAD_ID

    def encode(self, values: Sequence[Any], field: str, *, indexed: bool = True) -> np.ndarray:
        """[N] raw ids -> [N] int64; errors name `field[i]` (or `field` when not indexed)."""
        if self.vocab is not None:
            raw = [v if isinstance(v, str) else str(v) for v in values]
            return self.vocab.encode(np.array(raw, dtype=str)) if raw else empty_ids()
        if self.use_hash:
            return self.schema.hash_ids(self.column, np.array([str(v) for v in values], dtype=str))
        out = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values):
            out[i] = self._encoded_int(value, f"{field}[{i}]" if indexed else field)
        return out

    @property
    def takes_any_id(self) -> bool:
        """Every raw id encodes (through the vocabulary, or hashed): none is ever refused."""
        return self.vocab is not None or self.use_hash

    def accepts(self, value: Any) -> bool:
        """`value` (not None) encodes without a RequestError."""
        if self.takes_any_id:
            return True
        try:
            self._encoded_int(value, "")
        except RequestError:
            return False
        return True

    def _encoded_int(self, value: Any, field: str) -> int:
        # ASCII digits only: str.isdigit() also accepts "²" and lstrip("-") "--5", which
        # int() then refuses.
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(
                field, f"{self.name} has no vocabulary in this model, so ids must be encoded "
                f"integers; got {value!r}"
            )
        if not 0 <= value < self.size:
            raise RequestError(field, f"id {value} is outside {self.name}'s table [0, {self.size})")
        return value


def empty_ids() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def vocab_for(column: SparseFeat | VarLenSparseFeat, vocabs: Vocabularies | None) -> Any:
    """The vocabulary of a column: by its name, its table, or its name without hist_."""
    if vocabs is None:
        return None
    for key in (column.name, column.table, column.name.removeprefix(HISTORY_PREFIX)):
        if key in vocabs:
            return vocabs[key]
    return None
