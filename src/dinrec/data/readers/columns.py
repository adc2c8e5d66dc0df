"""Vectorised conversion of raw Arrow columns into EventLog arrays, with a validity mask per row.

Every parser returns `Parsed(values, ok, reason)`: values for all rows (placeholders where the
row is bad), a boolean mask of good rows, and the reason to report for the bad ones. Readers
collect the masks of all columns before deciding to raise or skip, so one pass over the data
finds every malformed row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Plain decimal or scientific notation; Arrow's own cast would raise on the first bad value
# without saying which, so rows are screened with this pattern first.
_NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"
# float64 holds every integer up to 2**53 exactly: far beyond any timestamp in seconds.
_MAX_EXACT_SECONDS = float(2**53)
# Formats tried, in order, for text timestamps when no timestamp_format is given.
ISO_FORMATS: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")

# An Arrow column, whole or in chunks (pyarrow ships no type stubs, so mypy sees Any).
AnyArray: TypeAlias = "pa.Array | pa.ChunkedArray"


class Parsed(NamedTuple):
    """A converted column: values [N], ok [N] (bool) and the reason bad rows are bad."""

    values: np.ndarray
    ok: np.ndarray
    reason: str


def _flat(arr: AnyArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _mask(arr: pa.Array) -> np.ndarray:
    """Boolean Arrow array -> numpy bool, nulls as False."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def to_str(arr: AnyArray) -> np.ndarray:
    """An Arrow column as a numpy unicode array; nulls become "".

    Dictionary-encodes first so that each distinct id is converted to Python once, which is
    what keeps million-row logs with few distinct ids fast.
    """
    flat = _flat(arr)
    if pa.types.is_dictionary(flat.type):
        flat = flat.dictionary_decode()
    if not _is_text(flat):
        flat = pc.cast(flat, pa.string())
    encoded = pc.dictionary_encode(pc.fill_null(flat, ""))
    words = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    if len(words) == 0:
        return np.zeros(len(flat), dtype="<U1")
    return words[encoded.indices.to_numpy(zero_copy_only=False)]


def parse_ids(arr: AnyArray) -> Parsed:
    """Raw ids as strings, surrounding blanks removed; empty or missing ids are bad.

    Integral floats (as Parquet files written from pandas often hold) are printed without
    ".0" so that 42.0 and 42 name the same id.
    """
    flat = _flat(arr)
    if pa.types.is_floating(flat.type):
        values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
        finite = np.isfinite(values)
        if np.array_equal(values[finite], np.round(values[finite])):
            digits = np.where(finite, values, 0).astype(np.int64).astype(str)
            return Parsed(np.where(finite, digits, ""), finite, "empty id")
    if _is_text(flat):
        flat = pc.utf8_trim_whitespace(flat)
        ok = _mask(pc.greater(pc.utf8_length(flat), 0))
    else:
        ok = ~_mask(pc.is_null(flat))
    return Parsed(to_str(flat), ok, "empty id")


def parse_floats(arr: AnyArray) -> Parsed:
    """Finite float64 numbers from text or numeric columns; blanks, text and nan/inf are bad."""
    flat = _flat(arr)
    if _is_text(flat):
        trimmed = pc.utf8_trim_whitespace(flat)
        ok_arrow = pc.match_substring_regex(trimmed, _NUMBER_PATTERN)
        safe = pc.if_else(ok_arrow, trimmed, pa.scalar("0"))
        values = np.asarray(pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False))
        ok = _mask(ok_arrow)
    elif pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type) or (
        pa.types.is_boolean(flat.type) or pa.types.is_decimal(flat.type)
    ):
        ok = ~_mask(pc.is_null(flat))
        values = np.asarray(
            pc.cast(pc.fill_null(flat, 0), pa.float64()).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
    else:
        n = len(flat)
        return Parsed(np.zeros(n), np.zeros(n, dtype=bool), f"not a number (type {flat.type})")
    ok &= np.isfinite(values)
    values = np.where(ok, values, 0.0)
    return Parsed(values, ok, "not a finite number")


def parse_labels(arr: AnyArray) -> Parsed:
    """Click labels as int8 in {0, 1}; any other value is bad."""
    numbers = parse_floats(arr)
    ok = numbers.ok & ((numbers.values == 0.0) | (numbers.values == 1.0))
    return Parsed(np.where(ok, numbers.values, 0).astype(np.int8), ok, "label must be 0 or 1")


def _seconds_from_numbers(numbers: Parsed, scale: float) -> Parsed:
    seconds = np.floor(numbers.values / scale)
    ok = numbers.ok & (np.abs(seconds) < _MAX_EXACT_SECONDS)
    return Parsed(np.where(ok, seconds, 0).astype(np.int64), ok, "not a unix timestamp")


def _seconds_from_text(flat: pa.Array, formats: tuple[str, ...]) -> Parsed:
    seconds = pa.nulls(len(flat), pa.int64())
    trimmed = pc.utf8_trim_whitespace(flat)
    for fmt in formats:
        parsed = pc.strptime(trimmed, format=fmt, unit="s", error_is_null=True)
        if pa.types.is_timestamp(parsed.type) and parsed.type.tz is not None:
            parsed = pc.cast(parsed, pa.timestamp("s"))
        seconds = pc.coalesce(seconds, pc.cast(parsed, pa.int64()))
    ok = ~_mask(pc.is_null(seconds))
    values = np.asarray(pc.fill_null(seconds, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    shown = " or ".join(repr(f) for f in formats)
    return Parsed(values, ok, f"not a time in format {shown}")


def parse_seconds(arr: AnyArray, timestamp_format: str | None = None) -> Parsed:
    """Timestamps as int64 seconds since the epoch (UTC).

    Args:
        arr: [N] a text, numeric, date or timestamp column.
        timestamp_format: None: numbers are unix seconds, text that is not a number is tried
            as ISO 8601 ("2017-11-25 10:00:00", "2017-11-25T10:00:00", "2017-11-25");
            "unix": unix seconds (fractions floored); "unix_ms": unix milliseconds;
            anything else: a strptime format for text columns (naive times are UTC).
    """
    flat = _flat(arr)
    if pa.types.is_timestamp(flat.type) or pa.types.is_date(flat.type):
        target = pa.timestamp("s", flat.type.tz) if pa.types.is_timestamp(flat.type) else (
            pa.timestamp("s")
        )
        cast = pc.cast(pc.cast(flat, target, safe=False), pa.int64())
        ok = ~_mask(pc.is_null(cast))
        values = np.asarray(pc.fill_null(cast, 0).to_numpy(zero_copy_only=False), np.int64)
        return Parsed(values, ok, "missing time")
    if timestamp_format in (None, "unix", "unix_ms"):
        scale = 1000.0 if timestamp_format == "unix_ms" else 1.0
        numeric = _seconds_from_numbers(parse_floats(flat), scale)
        if timestamp_format is not None or not _is_text(flat) or numeric.ok.all():
            return numeric
        text = _seconds_from_text(flat, ISO_FORMATS)
        ok = numeric.ok | text.ok
        values = np.where(numeric.ok, numeric.values, text.values)
        return Parsed(values, ok, "not a unix timestamp or ISO 8601 time")
    if not _is_text(flat):
        n = len(flat)
        return Parsed(
            np.zeros(n, np.int64), np.zeros(n, dtype=bool),
            f"timestamp_format {timestamp_format!r} needs a text column, got {flat.type}",
        )
    return _seconds_from_text(flat, (timestamp_format,))


def lookup(keys: np.ndarray, *tables: Mapping[str, str], default: str = "") -> list[np.ndarray]:
    """For each table, table[key] for every key (default when absent).

    Each distinct key is looked up once, and the keys are factorised once for all tables
    (e.g. every profile column joined on the user id).
    """
    if len(keys) == 0:
        return [np.zeros(0, dtype="<U1") for _ in tables]
    distinct, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    words = distinct.tolist()
    return [
        np.asarray([table.get(k, default) for k in words], dtype=str)[inverse] for table in tables
    ]


def raw_value(arr: AnyArray, index: int) -> object:
    """The original value at a row, for error messages."""
    return _flat(arr)[index].as_py()
