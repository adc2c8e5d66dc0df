"""Malformed-row reporting shared by all log readers: the error, the policy and the stats."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.readers.columns import AnyArray, Parsed, raw_value

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")
# Enough examples to diagnose a broken file without holding millions of messages in memory.
MAX_KEPT_PROBLEMS = 20

logger = logging.getLogger("dinrec.data.readers")


@dataclass(frozen=True)
class RowProblem:
    """One malformed row: where it is and what is wrong with it.

    Args:
        path: the file, as given to the reader.
        line: 1-based line number in a text file (row number in a Parquet file), or None
            when it could not be located.
        column: the column as named in the file (or the field's role when the file has no
            header), or None when the whole row is unusable (e.g. wrong number of fields).
        reason: what is wrong, including the offending value where there is one.
        unit: "line" for text files, "row" for Parquet.
    """

    path: str
    line: int | None
    column: str | None
    reason: str
    unit: str = "line"

    def message(self) -> str:
        """The one-line description used in errors and logs."""
        where = f"{self.unit} {self.line}" if self.line is not None else f"unknown {self.unit}"
        column = f", column {self.column!r}" if self.column is not None else ""
        return f"{self.path}, {where}{column}: {self.reason}"


class MalformedRowError(ValueError):
    """A row of a log file could not be parsed; `problem` says file, line and column."""

    def __init__(self, problem: RowProblem) -> None:
        super().__init__(problem.message())
        self.problem = problem


@dataclass(frozen=True)
class ReadStats:
    """What a reader did: rows kept and malformed rows skipped (only with on_error="skip").

    Args:
        source: the reader's name, e.g. "movielens-100k".
        files: every file that was read.
        rows: events in the returned EventLog.
        skipped: malformed rows that were dropped, over all files.
        problems: the first few skipped rows (at most MAX_KEPT_PROBLEMS), for messages.
    """

    source: str
    files: tuple[str, ...]
    rows: int
    skipped: int
    problems: tuple[RowProblem, ...] = ()

    def summary(self) -> str:
        """A one-line human summary, e.g. for a CLI."""
        text = f"{self.source}: {self.rows} events from {len(self.files)} file(s)"
        if self.skipped:
            text += f", {self.skipped} malformed row(s) skipped (first: "
            text += f"{self.problems[0].message()})" if self.problems else ")"
        return text


class ReadResult(NamedTuple):
    """A reader's output: the events and how they were read."""

    log: EventLog
    stats: ReadStats


def check_on_error(on_error: str) -> OnError:
    """Validate the on_error option; unknown values raise naming the choices."""
    if on_error == "raise":
        return "raise"
    if on_error == "skip":
        return "skip"
    raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")


class ProblemLog:
    """Applies the on_error policy: raise on the first problem, or count and keep examples."""

    def __init__(self, on_error: str) -> None:
        self.on_error = check_on_error(on_error)
        self.skipped = 0
        self.kept: list[RowProblem] = []
        self.files: list[str] = []

    def add_file(self, path: object) -> None:
        """Record that a file was read (for ReadStats.files)."""
        self.files.append(str(path))

    def report(self, problem: RowProblem) -> None:
        """Raise MalformedRowError in raise mode; otherwise count the row as skipped."""
        if self.on_error == "raise":
            raise MalformedRowError(problem)
        self.skipped += 1
        if len(self.kept) < MAX_KEPT_PROBLEMS:
            self.kept.append(problem)

    def report_counted(self, examples: list[RowProblem], total: int) -> None:
        """Report `total` bad rows of which `examples` (including the earliest) are spelled out."""
        if not total:
            return
        ordered = sorted(examples, key=lambda p: (p.line is None, p.line or 0))
        if self.on_error == "raise":
            raise MalformedRowError(ordered[0])
        self.skipped += total
        self.kept.extend(ordered[: max(0, MAX_KEPT_PROBLEMS - len(self.kept))])

    def result(self, source: str, log: EventLog) -> ReadResult:
        """Pair the log with its stats, logging a warning when rows were skipped."""
        stats = ReadStats(
            source=source, files=tuple(self.files), rows=len(log), skipped=self.skipped,
            problems=tuple(self.kept),
        )
        if self.skipped:
            logger.warning("%s", stats.summary())
        return ReadResult(log, stats)


class Check(NamedTuple):
    """One converted column to screen: its name in the file, the parse, and the raw values."""

    column: str
    parsed: Parsed
    raw: AnyArray


class RowSource(Protocol):
    """A parsed file that can tell the line (or row) number of each of its rows."""

    @property
    def path(self) -> object: ...

    @property
    def unit(self) -> str: ...

    def locate(self, rows: np.ndarray) -> list[int | None]: ...


def screen(
    source: RowSource, n_rows: int, checks: Sequence[Check], rejected: list[RowProblem],
    log: ProblemLog,
) -> np.ndarray:
    """The rows to keep [N] (bool), after reporting every bad row to `log`.

    A row is bad when any check fails on it; it is reported once, under the first failing
    column in `checks` order. `rejected` are rows the parser already left out (wrong number
    of fields); they count as skipped too. Raise mode names the earliest bad line.
    """
    first_bad = np.full(n_rows, -1, dtype=np.int64)
    for j, check in enumerate(checks):
        first_bad[~check.parsed.ok & (first_bad < 0)] = j
    bad_rows = np.flatnonzero(first_bad >= 0)
    if not len(bad_rows) and not rejected:
        return np.ones(n_rows, dtype=bool)
    # Rows are in file order, so the first few bad rows hold the earliest bad line.
    shown = bad_rows[:MAX_KEPT_PROBLEMS]
    examples = list(rejected)
    for row, line in zip(shown.tolist(), source.locate(shown), strict=True):
        check = checks[int(first_bad[row])]
        value = raw_value(check.raw, row)
        examples.append(RowProblem(
            str(source.path), line, check.column, f"{check.parsed.reason} (got {value!r})",
            source.unit,
        ))
    log.report_counted(examples, len(bad_rows) + len(rejected))
    return first_bad < 0
