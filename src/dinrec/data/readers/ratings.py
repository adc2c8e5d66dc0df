"""Rating files read into screened columns, and rating columns assembled into an EventLog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dinrec.data.events import EventLog
from dinrec.data.readers.columns import lookup, parse_floats, parse_ids, parse_seconds
from dinrec.data.readers.delimited import TextLayout, read_delimited
from dinrec.data.readers.problems import Check, ProblemLog, ReadResult, screen


@dataclass(frozen=True)
class Ratings:
    """The screened columns of a ratings file, aligned [N]."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray


def read_ratings(
    path: Path, layout: TextLayout, fields: tuple[str, str, str | None, str], log: ProblemLog
) -> Ratings:
    """Read user, item, rating (None: absent) and timestamp fields of a ratings file.

    Args:
        path: the ratings file.
        layout: its delimiter, header or field names, encoding.
        fields: the names in the file of (user, item, rating or None, timestamp).
        log: where malformed rows are reported.
    """
    user_f, item_f, rating_f, time_f = fields
    wanted = [f for f in fields if f is not None]
    table = read_delimited(path, layout, wanted)
    log.add_file(path)
    cols = table.columns
    checks = [
        Check(user_f, parse_ids(cols[user_f]), cols[user_f]),
        Check(item_f, parse_ids(cols[item_f]), cols[item_f]),
        Check(time_f, parse_seconds(cols[time_f], "unix"), cols[time_f]),
    ]
    if rating_f is not None:
        checks.insert(2, Check(rating_f, parse_floats(cols[rating_f]), cols[rating_f]))
    keep = screen(table, table.num_rows, checks, table.rejected_problems(), log)
    parsed = {c.column: c.parsed.values[keep] for c in checks}
    rating = parsed[rating_f].astype(np.float32) if rating_f is not None else None
    return Ratings(parsed[user_f], parsed[item_f], rating, parsed[time_f])


def assemble(
    source: str, ratings: Ratings, categories: dict[str, str],
    profiles: dict[str, dict[str, str]], log: ProblemLog,
) -> ReadResult:
    """Join item categories and user profiles onto the ratings and build the EventLog.

    Args:
        profiles: profile column -> {user id: value}.
    """
    joined = lookup(ratings.user, *profiles.values())
    profile = dict(zip(profiles, joined, strict=True))
    (category,) = lookup(ratings.item, categories)
    events = EventLog(
        user=ratings.user, item=ratings.item, category=category,
        timestamp=ratings.timestamp, rating=ratings.rating, profile=profile, source=source,
    )
    return log.result(source, events)
