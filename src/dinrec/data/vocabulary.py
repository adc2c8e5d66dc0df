"""Vocabulary: raw string ids -> int64 ids (0 = padding, 1 = unknown, known ids from 2).

A Vocabulary is fitted on the training split only, so an id first seen at test time maps to
the unknown id 1, as it would in serving. Ids are assigned by descending training frequency,
ties broken by the raw id string (ascending, by code point), so the same training data always
gives the same ids. A feature with a huge id space may instead hash every raw id into N
buckets (ids 2..N+1) with FNV-1a 64 over the UTF-8 bytes, which is stable across processes
(Python's hash() of a str is salted per process and is never used).

Example:
    >>> import numpy as np
    >>> vocab = Vocabulary.fit("item_id", np.array(["b", "a", "b", "c"]))
    >>> vocab.encode(np.array(["b", "a", "zzz"])).tolist()
    [2, 3, 1]
    >>> vocab.decode(np.array([2, 4])).tolist()
    ['b', 'c']
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# One hash for every path (inputs, vocabularies, serving); re-exported for callers here.
from dinrec.hashing import as_str_array, stable_hash

PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2
# What decode() returns for the two reserved ids.
PAD_TOKEN = "<pad>"
OOV_TOKEN = "<unk>"
# vocab.json keeps its metadata under this key, beside one {raw: id} mapping per feature.
META_KEY = "__meta__"
VOCAB_FORMAT = "dinrec.vocab"
VOCAB_FORMAT_VERSION = 1
# The bucket hash of hashed vocabularies, recorded in vocab.json (files without it used it).
VOCAB_HASH = "fnv1a64"


class Vocabulary:
    """One feature's mapping from raw string ids to int64 ids.

    Args:
        name: feature name, e.g. "item_id".
        mapping: {raw id: id} with ids >= 2, distinct; ignored (must be empty) when hashing.
        min_count: the training count an id needed to be kept (recorded; applied by fit).
        hash_buckets: hash every raw id into this many buckets (ids 2..N+1) instead of
            looking it up; nothing is unknown then, and decode is unavailable.
    """

    def __init__(
        self,
        name: str,
        mapping: Mapping[str, int] | None = None,
        *,
        min_count: int = 1,
        hash_buckets: int | None = None,
    ) -> None:
        if hash_buckets is not None and (
            isinstance(hash_buckets, bool) or not isinstance(hash_buckets, int) or hash_buckets < 1
        ):
            raise ValueError(f"vocabulary {name!r}: hash_buckets must be a positive int or None")
        if isinstance(min_count, bool) or min_count < 1:
            raise ValueError(f"vocabulary {name!r}: min_count must be >= 1, got {min_count!r}")
        mapping = dict(mapping or {})
        if hash_buckets is not None and mapping:
            raise ValueError(f"vocabulary {name!r}: a hashed vocabulary keeps no mapping")
        self.name = name
        self.min_count = int(min_count)
        self.hash_buckets = None if hash_buckets is None else int(hash_buckets)
        raws = np.array(list(mapping), dtype=str)
        ids = np.array(list(mapping.values()), dtype=np.int64)
        if len(ids) and (ids.min() < FIRST_ID or len(np.unique(ids)) != len(ids)):
            raise ValueError(f"vocabulary {name!r}: ids must be distinct and >= {FIRST_ID}")
        self._mapping = mapping
        # Sorted raw ids let encode() run as one searchsorted instead of a Python dict loop.
        order = np.argsort(raws, kind="stable")
        self._sorted_raw = raws[order]
        self._sorted_ids = ids[order]
        size = self.size
        self._raw_by_id = np.full(size if hash_buckets is None else 0, OOV_TOKEN, dtype=object)
        if hash_buckets is None:
            self._raw_by_id[PAD_ID] = PAD_TOKEN
            self._raw_by_id[ids] = raws

    @classmethod
    def fit(
        cls, name: str, raw: Any, *, min_count: int = 1, hash_buckets: int | None = None
    ) -> Vocabulary:
        """Fit on the training split's raw ids.

        Ids seen fewer than `min_count` times stay unknown (1). The rest get ids from 2 by
        descending count, ties by raw id string ascending. With `hash_buckets`, nothing is
        fitted (min_count does not apply: every raw id hashes to a bucket).

        Args:
            name: feature name.
            raw: [N] raw ids of the training events, one per occurrence.
            min_count: minimum training count to get an id of its own.
            hash_buckets: number of hash buckets, or None for an exact mapping.
        """
        if hash_buckets is not None:
            return cls(name, min_count=min_count, hash_buckets=hash_buckets)
        keys, counts = np.unique(as_str_array(raw), return_counts=True)  # keys sorted
        return cls.from_counts(name, keys, counts, min_count=min_count)

    @classmethod
    def from_counts(
        cls, name: str, keys: np.ndarray, counts: np.ndarray, *, min_count: int = 1
    ) -> Vocabulary:
        """What fit gives for raw ids seen counts[i] times each: keys [K] str, sorted and
        distinct; counts [K] int (data counted in chunks is fitted without holding it)."""
        keep = counts >= min_count
        keys, counts = keys[keep], counts[keep]
        # Stable sort on -count keeps np.unique's ascending raw order among equal counts.
        order = np.argsort(-counts, kind="stable")
        mapping = {str(k): FIRST_ID + i for i, k in enumerate(keys[order].tolist())}
        return cls(name, mapping, min_count=min_count)

    @property
    def size(self) -> int:
        """Embedding rows needed: max id + 1 (padding and unknown included)."""
        if self.hash_buckets is not None:
            return FIRST_ID + self.hash_buckets
        return int(self._sorted_ids.max()) + 1 if len(self._sorted_ids) else FIRST_ID

    @property
    def is_hashed(self) -> bool:
        return self.hash_buckets is not None

    def __len__(self) -> int:
        """Number of known raw ids (hashed: the bucket count)."""
        return self.hash_buckets if self.hash_buckets is not None else len(self._mapping)

    def __contains__(self, raw: object) -> bool:
        return self.hash_buckets is not None or str(raw) in self._mapping

    def encode(self, raw: Any) -> np.ndarray:
        """Raw ids -> int64 ids; unseen ids give 1 (never 1 when hashing).

        Args:
            raw: [N] raw ids (str; ints are compared by their decimal string).

        Returns:
            [N] int64 ids in [1, size).
        """
        arr = as_str_array(raw)
        if self.hash_buckets is not None:
            buckets = stable_hash(arr) % np.uint64(self.hash_buckets)
            return buckets.astype(np.int64) + FIRST_ID
        if len(self._sorted_raw) == 0:
            return np.full(len(arr), OOV_ID, dtype=np.int64)
        pos = np.searchsorted(self._sorted_raw, arr)
        pos = np.minimum(pos, len(self._sorted_raw) - 1)
        found = self._sorted_raw[pos] == arr
        return np.where(found, self._sorted_ids[pos], OOV_ID).astype(np.int64)

    def decode(self, ids: Any) -> np.ndarray:
        """Int ids -> raw id strings; 0 gives "<pad>", 1 and unused ids give "<unk>".

        Args:
            ids: [N] ints in [0, size).

        Returns:
            [N] numpy unicode array.
        """
        if self.hash_buckets is not None:
            raise ValueError(
                f"vocabulary {self.name!r} hashes raw ids into buckets; a bucket cannot be "
                "decoded back to a raw id"
            )
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = (arr < 0) | (arr >= self.size)
        if bad.any():
            raise ValueError(
                f"vocabulary {self.name!r}: id {int(arr[bad][0])} is outside [0, {self.size})"
            )
        return self._raw_by_id[arr].astype(str)

    def mapping(self) -> dict[str, int]:
        """A copy of {raw id: id}, in id order when fitted (empty when hashing)."""
        return dict(self._mapping)

    def meta(self) -> dict[str, Any]:
        """The settings saved beside the mapping in vocab.json."""
        return {"size": self.size, "min_count": self.min_count, "hash_buckets": self.hash_buckets}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.name, self.meta(), self._mapping) == (other.name, other.meta(), other._mapping)

    def __repr__(self) -> str:
        kind = f"hash_buckets={self.hash_buckets}" if self.is_hashed else f"known={len(self)}"
        return f"Vocabulary({self.name!r}, {kind}, size={self.size})"


class Vocabularies(Mapping[str, Vocabulary]):
    """One Vocabulary per feature (user_id, item_id, cate_id, profile columns), saved as JSON.

    History columns share their candidate's vocabulary: hist_item_id is encoded with item_id's,
    hist_cate_id with cate_id's.

    Args:
        vocabs: {feature name: Vocabulary}; the order is kept in vocab.json.
    """

    def __init__(self, vocabs: Mapping[str, Vocabulary]) -> None:
        for name, vocab in vocabs.items():
            if name == META_KEY or name != vocab.name:
                raise ValueError(f"vocabulary stored under {name!r} is named {vocab.name!r}")
        self._vocabs = dict(vocabs)

    @classmethod
    def fit(
        cls,
        values: Mapping[str, Any],
        *,
        min_count: int | Mapping[str, int] = 1,
        hash_buckets: Mapping[str, int] | None = None,
    ) -> Vocabularies:
        """Fit one Vocabulary per feature on the training split's raw values.

        Args:
            values: {feature name: [N_f] raw ids, one per training occurrence}.
            min_count: one minimum count for all features, or {feature: count} (default 1).
            hash_buckets: {feature: bucket count} for the features to hash instead.
        """
        hash_buckets = dict(hash_buckets or {})
        counts = dict(min_count) if isinstance(min_count, Mapping) else {}
        unknown = (set(hash_buckets) | set(counts)) - set(values)
        if unknown:
            raise ValueError(
                f"vocabulary settings name unknown features {sorted(unknown)}; "
                f"features are {list(values)}"
            )
        default = 1 if isinstance(min_count, Mapping) else int(min_count)
        return cls({
            name: Vocabulary.fit(
                name, raw, min_count=counts.get(name, default),
                hash_buckets=hash_buckets.get(name),
            )
            for name, raw in values.items()
        })

    def __getitem__(self, name: str) -> Vocabulary:
        try:
            return self._vocabs[name]
        except KeyError:
            raise KeyError(
                f"no vocabulary for feature {name!r}; have {list(self._vocabs)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._vocabs)

    def __len__(self) -> int:
        return len(self._vocabs)

    def sizes(self) -> dict[str, int]:
        """{feature: embedding rows (max id + 1)}."""
        return {name: vocab.size for name, vocab in self._vocabs.items()}

    def encode(self, name: str, raw: Any) -> np.ndarray:
        """[N] raw ids of feature `name` -> [N] int64 ids."""
        return self[name].encode(raw)

    def to_json_dict(self) -> dict[str, Any]:
        """{"__meta__": {...}, feature: {raw id: id}, ...}: the vocab.json layout."""
        meta = {
            "format": VOCAB_FORMAT, "format_version": VOCAB_FORMAT_VERSION,
            "pad_id": PAD_ID, "oov_id": OOV_ID, "id_hash": VOCAB_HASH,
            "features": {name: vocab.meta() for name, vocab in self._vocabs.items()},
        }
        out: dict[str, Any] = {META_KEY: meta}
        out.update({name: vocab.mapping() for name, vocab in self._vocabs.items()})
        return out

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Vocabularies:
        """Inverse of to_json_dict; checks the format and that every feature has settings."""
        meta = data.get(META_KEY)
        if not isinstance(meta, Mapping) or meta.get("format") != VOCAB_FORMAT:
            raise ValueError(f"not a dinrec vocabulary: missing {META_KEY!r} with format")
        if meta.get("format_version") != VOCAB_FORMAT_VERSION:
            raise ValueError(
                f"vocabulary format_version {meta.get('format_version')!r} is not supported "
                f"(expected {VOCAB_FORMAT_VERSION})"
            )
        if (meta.get("pad_id"), meta.get("oov_id")) != (PAD_ID, OOV_ID):
            raise ValueError("vocabulary uses other reserved ids than 0 = padding, 1 = unknown")
        if meta.get("id_hash", VOCAB_HASH) != VOCAB_HASH:
            raise ValueError(
                f"vocabulary hashes with {meta.get('id_hash')!r}; this dinrec hashes with "
                f"{VOCAB_HASH!r}"
            )
        settings = meta.get("features", {})
        names = [k for k in data if k != META_KEY]
        if set(names) != set(settings):
            raise ValueError(
                f"vocabulary features {names} do not match their settings {list(settings)}"
            )
        vocabs = {}
        for name in names:
            feat = settings[name]
            vocab = Vocabulary(
                name, {str(k): int(v) for k, v in data[name].items()},
                min_count=int(feat["min_count"]), hash_buckets=feat["hash_buckets"],
            )
            if vocab.size != feat["size"]:
                raise ValueError(
                    f"vocabulary {name!r}: stored size {feat['size']} but mapping gives "
                    f"{vocab.size}"
                )
            vocabs[name] = vocab
        return cls(vocabs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write vocab.json (UTF-8, deterministic: same vocabularies, same bytes)."""
        text = json.dumps(self.to_json_dict(), ensure_ascii=False, separators=(",", ":"))
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabularies:
        """Read a vocab.json written by save()."""
        return cls.from_json_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabularies):
            return NotImplemented
        return list(self._vocabs.items()) == list(other._vocabs.items())

    def __repr__(self) -> str:
        return f"Vocabularies({self.sizes()})"
