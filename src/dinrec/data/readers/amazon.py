"""Amazon reviews from SNAP (McAuley et al.): the DIN paper's Amazon Electronics dataset.

Reviews are JSON lines `reviews_<Category>[_5].json(.gz)` with reviewerID (user), asin (item),
overall (rating) and unixReviewTime (seconds). Categories come from `meta_<Category>.json(.gz)`,
whose old SNAP lines are Python literals (single quotes), not JSON: each line is tried as JSON
and then with `ast.literal_eval`, which only accepts literals (never `eval`).

Category, as in the DIN reference preprocessing (`categories[-1][-1]`): the last entry of the
last categories list of the product, e.g. "Headphones" for
`[["Electronics", "Accessories & Supplies", "Audio & Video Accessories", "Headphones"]]`.
`category_list="first"` takes the last entry of the first list instead. The 2018 release's
flat "category" list counts as one list. Items without meta data, or with no categories,
get "".

Example:
    >>> result = read_amazon("~/.cache/dinrec/amazon-electronics")  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from dinrec.data.events import EventLog
from dinrec.data.readers.columns import lookup, parse_floats, parse_ids, parse_seconds
from dinrec.data.readers.delimited import open_binary
from dinrec.data.readers.problems import ProblemLog, ReadResult, RowProblem

REVIEW_FIELDS: tuple[tuple[str, str], ...] = (
    ("reviewerID", "user"), ("asin", "item"), ("overall", "rating"),
    ("unixReviewTime", "timestamp"),
)
_REVIEW_SCHEMA = pa.schema([
    ("reviewerID", pa.string()), ("asin", pa.string()), ("overall", pa.float64()),
    ("unixReviewTime", pa.int64()),
])
# The asin of a meta line, found without parsing the line, so that only products that were
# reviewed get the (slow) full parse.
_ASIN = re.compile(r"""["']asin["']\s*:\s*["']([^"']*)["']""")
_REVIEWS_NAME = re.compile(r"^reviews_(?P<category>.+?)(_\d+)?\.json(\.gz)?$")


def _parse_record(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


def _find_files(path: Path, meta: str | Path | None) -> tuple[Path, Path | None]:
    """(reviews file, meta file or None) from a directory or a reviews file."""
    path = path.expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if _REVIEWS_NAME.match(p.name))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise ValueError(f"{path}: expected exactly one reviews_<Category>*.json(.gz) file, "
                             f"found {names}")
        reviews = found[0]
    elif path.exists():
        reviews = path
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    if meta is not None:
        meta_path = Path(meta).expanduser()
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: no such meta file")
        return reviews, meta_path
    match = _REVIEWS_NAME.match(reviews.name)
    if match is None:
        return reviews, None
    for suffix in (".json.gz", ".json"):
        candidate = reviews.parent / f"meta_{match['category']}{suffix}"
        if candidate.exists():
            return reviews, candidate
    return reviews, None


def _reviews_fast(path: Path) -> dict[str, np.ndarray] | None:
    """Columns of a clean strict-JSON reviews file via pyarrow; None when anything is off."""
    try:
        with open_binary(path) as handle:
            table = pa_json.read_json(handle, parse_options=pa_json.ParseOptions(
                explicit_schema=_REVIEW_SCHEMA, unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    user, item = parse_ids(table["reviewerID"]), parse_ids(table["asin"])
    rating, time = parse_floats(table["overall"]), parse_seconds(table["unixReviewTime"])
    if not (user.ok.all() and item.ok.all() and rating.ok.all() and time.ok.all()):
        return None
    return {"user": user.values, "item": item.values, "rating": rating.values,
            "timestamp": time.values}


def _reviews_slow(path: Path, log: ProblemLog) -> dict[str, np.ndarray]:
    """Columns of a reviews file parsed line by line, reporting each bad line."""
    rows: dict[str, list[Any]] = {role: [] for _, role in REVIEW_FIELDS}
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            problem = _review_problem(text, str(path), number)
            if isinstance(problem, RowProblem):
                log.report(problem)
                continue
            for role, value in problem.items():
                rows[role].append(value)
    return {
        "user": np.asarray(rows["user"], dtype=str), "item": np.asarray(rows["item"], dtype=str),
        "rating": np.asarray(rows["rating"], dtype=np.float64),
        "timestamp": np.asarray(rows["timestamp"], dtype=np.int64),
    }


def _review_problem(text: str, path: str, line: int) -> RowProblem | dict[str, Any]:
    """The parsed review fields of one line, or what is wrong with it."""
    try:
        record = _parse_record(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        return RowProblem(path, line, None, f"neither JSON nor a Python literal ({err})")
    if not isinstance(record, dict):
        return RowProblem(path, line, None, f"expected an object, got {type(record).__name__}")
    values: dict[str, Any] = {}
    for name, role in REVIEW_FIELDS:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return RowProblem(path, line, name, f"missing value (got {value!r})")
        if role in ("user", "item"):
            values[role] = str(value).strip()
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            return RowProblem(path, line, name, f"not a number (got {value!r})")
        if not np.isfinite(number):
            return RowProblem(path, line, name, f"not a finite number (got {value!r})")
        values[role] = int(np.floor(number)) if role == "timestamp" else number
    return values


def _category(record: dict[str, Any], category_list: str) -> str:
    lists = record.get("categories")
    if lists is None and isinstance(record.get("category"), list):
        lists = [record["category"]]  # the 2018 release has one flat "category" list
    if not isinstance(lists, list) or not lists:
        return ""
    chosen = lists[-1] if category_list == "last" else lists[0]
    if not isinstance(chosen, list) or not chosen:
        return ""
    return str(chosen[-1]).strip()


def read_meta_categories(
    path: Path, wanted: set[str], log: ProblemLog, category_list: str = "last"
) -> dict[str, str]:
    """{asin: category} for the asins in `wanted`, from a SNAP meta file (JSON or literals)."""
    categories: dict[str, str] = {}
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            found = _ASIN.search(text)
            if found is not None and found.group(1) not in wanted:
                continue
            try:
                record = _parse_record(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
                log.report(RowProblem(str(path), number, None,
                                      f"neither JSON nor a Python literal ({err})"))
                continue
            if not isinstance(record, dict) or not str(record.get("asin") or "").strip():
                log.report(RowProblem(str(path), number, "asin", "missing value"))
                continue
            categories[str(record["asin"]).strip()] = _category(record, category_list)
    return categories


def read_amazon(
    path: str | Path, *, meta: str | Path | None = None, category_list: str = "last",
    on_error: str = "raise",
) -> ReadResult:
    """Amazon (SNAP) reviews as an EventLog with ratings and categories.

    Args:
        path: a reviews_<Category>[_5].json(.gz) file, or a directory holding exactly one.
        meta: the meta_<Category>.json(.gz) file; None: meta_<Category>.json(.gz) beside the
            reviews file, when present (otherwise every category is "").
        category_list: "last" (the DIN reference code) or "first": which categories list
            gives its last, most specific entry.
        on_error: "raise" (default) or "skip" malformed lines.
    """
    if category_list not in ("last", "first"):
        raise ValueError(f"category_list must be 'last' or 'first', got {category_list!r}")
    log = ProblemLog(on_error)
    reviews_path, meta_path = _find_files(Path(path), meta)
    log.add_file(reviews_path)
    named = _REVIEWS_NAME.match(reviews_path.name)
    source = f"amazon:{named['category']}" if named else "amazon"
    columns = _reviews_fast(reviews_path)
    if columns is None:
        columns = _reviews_slow(reviews_path, log)
    categories: dict[str, str] = {}
    if meta_path is not None:
        log.add_file(meta_path)
        wanted = {str(x) for x in np.unique(columns["item"]).tolist()}
        categories = read_meta_categories(meta_path, wanted, log, category_list)
    (category,) = lookup(columns["item"], categories)
    events = EventLog(
        user=columns["user"], item=columns["item"], category=category,
        timestamp=columns["timestamp"], rating=columns["rating"].astype(np.float32),
        source=source,
    )
    return log.result(source, events)
