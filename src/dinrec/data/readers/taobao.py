"""Taobao UserBehavior.csv (Tianchi dataset 649): user, item, category, behavior, timestamp.

No header; comma-separated; behavior is one of pv (page view), cart, fav, buy; timestamps are
unix seconds. The raw file has a few events outside its 2017-11-25..2017-12-03 window: they
are well-formed rows and are kept (filtering by time is the sample builder's concern).

Example:
    >>> result = read_taobao("UserBehavior.csv", behaviors=("pv", "buy"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dinrec.data.events import EventLog
from dinrec.data.readers.columns import Parsed, parse_ids, parse_seconds, to_str
from dinrec.data.readers.delimited import TextLayout, read_delimited
from dinrec.data.readers.problems import Check, ProblemLog, ReadResult, screen

BEHAVIORS: tuple[str, ...] = ("pv", "cart", "fav", "buy")
FIELDS: tuple[str, ...] = ("user", "item", "category", "behavior", "timestamp")


def _parse_behavior(arr: pa.Array) -> Parsed:
    trimmed = pc.utf8_trim_whitespace(arr)
    known = pc.is_in(trimmed, value_set=pa.array(BEHAVIORS))
    ok = np.asarray(pc.fill_null(known, False).to_numpy(zero_copy_only=False), dtype=bool)
    return Parsed(to_str(trimmed), ok, f"behavior must be one of {', '.join(BEHAVIORS)}")


def read_taobao(
    path: str | Path, *, behaviors: Sequence[str] | None = None, on_error: str = "raise"
) -> ReadResult:
    """Taobao UserBehavior events, with the behavior type in EventLog.behavior.

    Args:
        path: UserBehavior.csv (or a .csv.gz of it).
        behaviors: keep only these behavior types (e.g. ("pv",)); None keeps all.
        on_error: "raise" (default) or "skip" malformed rows (including unknown behaviors).
    """
    if behaviors is not None:
        unknown = [b for b in behaviors if b not in BEHAVIORS]
        if unknown:
            raise ValueError(f"unknown behavior {unknown[0]!r}; choose from {BEHAVIORS}")
    log = ProblemLog(on_error)
    path = Path(path).expanduser()
    table = read_delimited(path, TextLayout(",", FIELDS))
    log.add_file(path)
    cols = table.columns
    checks = [
        Check("user", parse_ids(cols["user"]), cols["user"]),
        Check("item", parse_ids(cols["item"]), cols["item"]),
        Check("category", parse_ids(cols["category"]), cols["category"]),
        Check("behavior", _parse_behavior(cols["behavior"]), cols["behavior"]),
        Check("timestamp", parse_seconds(cols["timestamp"], "unix"), cols["timestamp"]),
    ]
    keep = screen(table, table.num_rows, checks, table.rejected_problems(), log)
    values = {c.column: c.parsed.values for c in checks}
    if behaviors is not None:
        keep &= np.isin(values["behavior"], np.asarray(list(behaviors), dtype=str))
    events = EventLog(
        user=values["user"][keep], item=values["item"][keep],
        category=values["category"][keep], timestamp=values["timestamp"][keep],
        behavior=values["behavior"][keep], source="taobao",
    )
    return log.result("taobao", events)
