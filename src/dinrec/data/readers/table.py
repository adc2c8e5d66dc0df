"""Any CSV/TSV or Parquet behavior log, read through a column mapping.

Example:
    >>> result = read_table(  # doctest: +SKIP
    ...     "clicks.csv",
    ...     columns={"user": "uid", "item": "iid", "category": "cid", "timestamp": "ts",
    ...              "label": "click", "profile": ["age", "gender"]},
    ...     timestamp_format="%Y-%m-%d %H:%M:%S",
    ... )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dinrec.data.events import EventLog
from dinrec.data.readers.columns import (
    AnyArray,
    Parsed,
    parse_floats,
    parse_ids,
    parse_labels,
    parse_seconds,
)
from dinrec.data.readers.delimited import TextLayout, read_delimited, read_header
from dinrec.data.readers.problems import (
    Check,
    ProblemLog,
    ReadResult,
    RowProblem,
    RowSource,
    screen,
)

# Keys a column mapping may use; "profile" maps to a list of columns (or {name: column}).
MAPPING_KEYS: tuple[str, ...] = (
    "user", "item", "category", "timestamp", "rating", "label", "behavior", "profile",
)
REQUIRED_KEYS: tuple[str, ...] = ("user", "item")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

# Values: a column name, or for "profile" a list of names or {profile name: column}.
ColumnMapping = Mapping[str, Any]


@dataclass(frozen=True)
class _ParquetRows:
    """Parquet has no lines: problems name the 1-based row."""

    path: Path
    unit: str = "row"

    def locate(self, rows: np.ndarray) -> list[int | None]:
        return [int(r) + 1 for r in rows]


def _check_mapping(columns: ColumnMapping) -> tuple[dict[str, str], dict[str, str]]:
    """({role: column}, {profile name: column}) from a mapping, rejecting unknown keys."""
    for key in columns:
        if key not in MAPPING_KEYS:
            raise ValueError(f"unknown column mapping key {key!r}; known keys: "
                             f"{', '.join(MAPPING_KEYS)}")
    for key in REQUIRED_KEYS:
        if key not in columns:
            raise ValueError(f"the column mapping needs {key!r} (got {', '.join(columns)})")
    roles: dict[str, str] = {}
    for key, value in columns.items():
        if key == "profile":
            continue
        if not isinstance(value, str) or not value:
            raise ValueError(f"column mapping {key!r} must name one column, got {value!r}")
        roles[key] = value
    profile_spec = columns.get("profile", ())
    if isinstance(profile_spec, str):
        raise ValueError(f"column mapping 'profile' must be a list of columns, got "
                         f"{profile_spec!r}")
    if isinstance(profile_spec, Mapping):
        profile = {str(k): str(v) for k, v in profile_spec.items()}
    else:
        profile = {str(c): str(c) for c in profile_spec}
    return roles, profile


def read_table(
    path: str | Path, *, columns: ColumnMapping, timestamp_format: str | None = None,
    delimiter: str | None = None, column_names: Sequence[str] | None = None,
    on_error: str = "raise",
) -> ReadResult:
    """A CSV/TSV (.gz too) or Parquet log as an EventLog, through a column mapping.

    Args:
        path: the file; .parquet/.pq is read as Parquet, anything else as delimited text.
        columns: {"user": col, "item": col} plus any of "category", "timestamp",
            "rating", "label" (0/1), "behavior", and "profile" (a list of columns, or
            {profile name: column}). Unknown keys raise naming the key.
        timestamp_format: None (unix seconds, or ISO 8601 text), "unix", "unix_ms", or a
            strptime format such as "%Y-%m-%d %H:%M:%S" (naive times are UTC).
        delimiter: for text files; default "\\t" for .tsv(.gz), else ",".
        column_names: field names for a text file without a header line.
        on_error: "raise" (default) or "skip" malformed rows.

    Without a "timestamp" mapping the row's position in the file stands in for its time
    (0, 1, 2, ...), so that time order is file order. Category, behavior and profile values
    may be empty; user and item may not.
    """
    roles, profile = _check_mapping(columns)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    wanted = list(dict.fromkeys([*roles.values(), *profile.values()]))
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES
    layout = TextLayout(
        delimiter or ("\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","),
        tuple(column_names) if column_names is not None else None, quoting=True,
    )
    present = pq.read_schema(path).names if is_parquet else (
        layout.names if layout.names is not None else read_header(path, layout)
    )
    mapped = [*roles.items(), *(("profile", c) for c in profile.values())]
    for key, column in mapped:
        if column not in present:
            raise ValueError(f"{path}: no column {column!r} (mapped as {key!r}); the file has "
                             f"{', '.join(present)}")
    log = ProblemLog(on_error)
    arrays: dict[str, AnyArray]
    source_rows: RowSource
    rejected: list[RowProblem] = []
    if is_parquet:
        parquet = pq.read_table(path, columns=wanted)
        arrays = {c: parquet.column(c) for c in wanted}
        source_rows = _ParquetRows(path)
        n_rows = parquet.num_rows
    else:
        text = read_delimited(path, layout, wanted)
        arrays, n_rows, source_rows = dict(text.columns), text.num_rows, text
        rejected = text.rejected_problems()
    log.add_file(path)
    parsers: dict[str, Callable[[AnyArray], Parsed]] = {
        "user": parse_ids, "item": parse_ids, "rating": parse_floats, "label": parse_labels,
        "timestamp": lambda arr: parse_seconds(arr, timestamp_format),
    }
    checks = {
        key: Check(roles[key], parse(arrays[roles[key]]), arrays[roles[key]])
        for key, parse in parsers.items() if key in roles
    }
    keep = screen(source_rows, n_rows, list(checks.values()), rejected, log)
    parsed = {key: check.parsed.values[keep] for key, check in checks.items()}

    def text_of(column: str) -> np.ndarray:
        # Free-text columns may be empty, so only the id-style normalisation is used.
        return parse_ids(arrays[column]).values[keep]

    events = EventLog(
        user=parsed["user"], item=parsed["item"],
        category=text_of(roles["category"]) if "category" in roles else (
            np.full(int(keep.sum()), "", dtype="<U1")),
        timestamp=parsed.get("timestamp", np.arange(n_rows, dtype=np.int64)[keep]),
        rating=parsed["rating"].astype(np.float32) if "rating" in parsed else None,
        label=parsed.get("label"),
        behavior=text_of(roles["behavior"]) if "behavior" in roles else None,
        profile={name: text_of(column) for name, column in profile.items()},
        source=f"table:{path.name}",
    )
    return log.result(events.source, events)
