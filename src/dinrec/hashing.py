"""The one stable id hash, used wherever raw ids become table rows (inputs, vocabularies,
serving), and DeepCTR's vocabulary_path lookup files.

FNV-1a 64 over each raw id's UTF-8 bytes, vectorised over the ids: the same in every
process and on every platform (Python's hash() of a str is salted per process). A column
with use_hash=True hashes into the rows of the table it reads, never into its own
vocabulary_size, so columns sharing a table (item_id and hist_item_id) agree on every id.

Example:
    >>> import numpy as np
    >>> hash_into_rows(np.array(["0", "abc", "abc", ""]), 101).tolist()
    [0, 32, 32, 0]
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any

import numpy as np

# The scheme a schema records for its use_hash columns (schema.json "id_hash").
HASH_SCHEME = "fnv1a64-table"
# dinrec before this scheme: blake2b into each column's own vocabulary_size. Kept only so
# bundles saved then score their hashed ids as they were trained.
LEGACY_HASH_SCHEME = "blake2b-column"
HASH_SCHEMES = (HASH_SCHEME, LEGACY_HASH_SCHEME)
# Raw values that mean padding, as DeepCTR's Hash(mask_zero=True): they stay id 0.
PADDING_VALUES = ("0", "0.0", "")

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def as_str_array(raw: Any) -> np.ndarray:
    """Raw ids as a flat numpy unicode array (ints become their decimal strings)."""
    arr = np.asarray(raw)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr if arr.dtype.kind == "U" else arr.astype(str)


def stable_hash(raw: Any) -> np.ndarray:
    """FNV-1a 64-bit hash of each raw id's UTF-8 bytes, vectorised over the ids.

    Args:
        raw: [N] raw ids (str, or anything numpy turns into str).

    Returns:
        [N] uint64 hashes, identical in every process and on every platform.
    """
    encoded = np.char.encode(as_str_array(raw), "utf-8")  # [N] bytes, width W
    n, width = len(encoded), encoded.dtype.itemsize
    hashes = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if n == 0 or width == 0:
        return hashes
    octets = np.frombuffer(encoded.tobytes(), dtype=np.uint8).reshape(n, width)  # [N, W]
    # Shorter strings are null-padded to W; only their own bytes enter the hash.
    lengths = np.char.str_len(encoded)  # [N]
    for j in range(width):
        # uint64 arrays wrap on overflow, which is exactly FNV's modulo 2**64.
        stepped = (hashes ^ octets[:, j].astype(np.uint64)) * _FNV_PRIME
        hashes = np.where(j < lengths, stepped, hashes)
    return hashes


def hash_into_rows(values: Any, rows: int) -> np.ndarray:
    """Raw values -> int64 ids in [1, rows); padding values ("0", 0, "0.0", "") stay 0.

    Args:
        values: raw ids of any shape (ints, floats or strings).
        rows: rows of the table the ids index (>= 2: row 0 is padding).

    Returns:
        int64 ids, the shape of `values`.
    """
    arr = np.asarray(values)
    if rows < 2:
        raise ValueError(f"hashing needs a table of >= 2 rows (row 0 is padding), got {rows}")
    text = as_str_array(arr)
    ids = (stable_hash(text) % np.uint64(rows - 1)).astype(np.int64) + 1
    ids[np.isin(text, PADDING_VALUES)] = 0
    return ids.reshape(arr.shape)


def legacy_blake2b_ids(values: Any, buckets: int) -> np.ndarray:
    """The pre-FNV use_hash ids (LEGACY_HASH_SCHEME): blake2b of str(value) into
    [1, buckets), "0" and "" to 0. Only bundles saved before the scheme was recorded use it."""
    arr = np.asarray(values)
    flat = arr.reshape(-1).tolist()
    span = max(buckets - 1, 1)
    out = np.zeros(len(flat), dtype=np.int64)
    for i, value in enumerate(flat):
        text = str(value)
        if text not in ("0", ""):
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little") % span + 1
    return out.reshape(arr.shape)


@lru_cache(maxsize=32)
def _read_vocabulary_file(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted raw keys, their ids) of a DeepCTR vocabulary file; cached per file version."""
    keys: list[str] = []
    ids: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            value, sep, key = line.partition(",")
            if not sep or not value.strip().lstrip("-").isdigit():
                raise ValueError(
                    f"vocabulary file {path}, line {number}: expected 'id,raw_value' "
                    f"(DeepCTR's layout), got {line!r}"
                )
            keys.append(key)
            ids.append(int(value))
    raw = np.array(keys, dtype=str)
    order = np.argsort(raw, kind="stable")
    return raw[order], np.array(ids, dtype=np.int64)[order]


def lookup_vocabulary_file(path: str, values: Any, feature: str) -> np.ndarray:
    """Raw values -> ids through a DeepCTR vocabulary_path file ('id,raw' per line);
    values the file does not list get 0, as DeepCTR's Hash(default_value=0)."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as err:
        raise ValueError(
            f"feature {feature!r}: cannot read vocabulary_path {path!r}: {err}"
        ) from None
    keys, ids = _read_vocabulary_file(str(path), stamp)
    arr = np.asarray(values)
    text = as_str_array(arr)
    if len(keys) == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, text), len(keys) - 1)
    found = keys[pos] == text
    return np.where(found, ids[pos], 0).astype(np.int64).reshape(arr.shape)
