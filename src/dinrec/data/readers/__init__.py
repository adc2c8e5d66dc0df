"""Behavior-log readers: raw logs from each source family into one typed EventLog.

`read_log(source, path, **options)` picks a reader by name (see READERS) and returns the
EventLog; `read_log_with_stats` returns `(log, stats)` where `ReadStats` says how many rows
were kept and how many malformed rows were skipped. Every reader takes
`on_error="raise"` (default: a malformed row raises MalformedRowError, a ValueError naming
file, 1-based line and column) or `on_error="skip"` (such rows are dropped, counted in the
stats, and a warning is logged).

Example:
    >>> from dinrec.data.readers import read_log, read_log_with_stats
    >>> log = read_log("movielens", "data/ml-100k")  # doctest: +SKIP
    >>> log, stats = read_log_with_stats(  # doctest: +SKIP
    ...     "table", "clicks.csv", columns={"user": "uid", "item": "iid"}, on_error="skip")
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from dinrec.data.events import EventLog
from dinrec.data.readers.amazon import read_amazon
from dinrec.data.readers.movielens import (
    read_movielens,
    read_movielens_1m,
    read_movielens_100k,
    read_movielens_latest,
)
from dinrec.data.readers.problems import MalformedRowError, ReadResult, ReadStats, RowProblem
from dinrec.data.readers.recbole import read_recbole
from dinrec.data.readers.table import read_table
from dinrec.data.readers.taobao import read_taobao

Reader = Callable[..., ReadResult]

READERS: Mapping[str, Reader] = MappingProxyType({
    "movielens": read_movielens,
    "movielens-100k": read_movielens_100k,
    "movielens-1m": read_movielens_1m,
    "movielens-latest": read_movielens_latest,
    "recbole": read_recbole,
    "amazon": read_amazon,
    "taobao": read_taobao,
    "table": read_table,
})


def _reader(source: str, options: Mapping[str, Any]) -> Reader:
    if source not in READERS:
        raise ValueError(f"unknown log source {source!r}; known: {', '.join(READERS)}")
    reader = READERS[source]
    accepted = [
        name for name, p in inspect.signature(reader).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for name in options:
        if name not in accepted:
            raise ValueError(f"reader {source!r} has no option {name!r}; its options: "
                             f"{', '.join(accepted)}")
    return partial(reader, **options)


def read_log_with_stats(
    source: str, path: str | os.PathLike[str], **options: Any
) -> ReadResult:
    """Read a behavior log with the named reader; returns (EventLog, ReadStats).

    Args:
        source: a name in READERS ("movielens" detects the layout from the directory).
        path: the file or directory the reader expects.
        **options: the reader's keyword options (on_error, columns, meta, ...); unknown
            options raise naming the option and listing the reader's options.
    """
    return _reader(source, options)(path)


def read_log(source: str, path: str | os.PathLike[str], **options: Any) -> EventLog:
    """Read a behavior log with the named reader (see read_log_with_stats)."""
    return read_log_with_stats(source, path, **options).log


__all__ = [
    "READERS",
    "MalformedRowError",
    "ReadResult",
    "ReadStats",
    "RowProblem",
    "read_amazon",
    "read_log",
    "read_log_with_stats",
    "read_movielens",
    "read_movielens_1m",
    "read_movielens_100k",
    "read_movielens_latest",
    "read_recbole",
    "read_table",
    "read_taobao",
]
