"""RecBole atomic files: <name>.inter, optional <name>.item and <name>.user.

Each file is tab-separated with a header of `field:type` names, e.g.
`user_id:token	item_id:token	rating:float	timestamp:float`. Category is the first token of
the item file's category field (`class:token_seq` in RecBole's MovieLens, so "Animation" for
Toy Story); "" for items without one. Every field of the user file but user_id becomes a
profile column named without its type (`zip_code` is renamed `zip`, matching the MovieLens
readers).
"""

from __future__ import annotations

from pathlib import Path

from dinrec.data.readers.columns import parse_ids, to_str
from dinrec.data.readers.delimited import TextLayout, read_delimited, read_header
from dinrec.data.readers.problems import Check, ProblemLog, ReadResult, screen
from dinrec.data.readers.ratings import assemble, read_ratings

# Field names tried, in order, for the item category when none is given.
CATEGORY_FIELDS: tuple[str, ...] = ("class", "genre", "categories", "category", "cate_id")
_PROFILE_RENAMES = {"zip_code": "zip"}
_LAYOUT = TextLayout("\t", None, "utf-8", quoting=False)


def _typed_names(path: Path) -> dict[str, str]:
    """{field name without type: header name} of an atomic file."""
    names = read_header(path, _LAYOUT)
    return {name.split(":", 1)[0]: name for name in names}


def _need(fields: dict[str, str], name: str, path: Path) -> str:
    if name not in fields:
        raise ValueError(f"{path}: no {name!r} field in the header "
                         f"(fields: {', '.join(fields.values())})")
    return fields[name]


def _inter_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    found = sorted(path.glob("*.inter"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ValueError(f"{path}: expected exactly one RecBole .inter file, found {names}")
    return found[0]


def _categories(path: Path, category_field: str | None, log: ProblemLog) -> dict[str, str]:
    fields = _typed_names(path)
    item_f = _need(fields, "item_id", path)
    if category_field is not None:
        cat_f = _need(fields, category_field, path)
    else:
        present = [fields[c] for c in CATEGORY_FIELDS if c in fields]
        if not present:
            return {}
        cat_f = present[0]
    table = read_delimited(path, _LAYOUT, [item_f, cat_f])
    log.add_file(path)
    ids = parse_ids(table.columns[item_f])
    keep = screen(table, table.num_rows, [Check(item_f, ids, table.columns[item_f])],
                  table.rejected_problems(), log)
    values = to_str(table.columns[cat_f])[keep]
    return {
        item: value.split(None, 1)[0] if value.strip() else ""
        for item, value in zip(ids.values[keep].tolist(), values.tolist(), strict=True)
    }


def _profiles(path: Path, log: ProblemLog) -> dict[str, dict[str, str]]:
    fields = _typed_names(path)
    user_f = _need(fields, "user_id", path)
    table = read_delimited(path, _LAYOUT)
    log.add_file(path)
    ids = parse_ids(table.columns[user_f])
    keep = screen(table, table.num_rows, [Check(user_f, ids, table.columns[user_f])],
                  table.rejected_problems(), log)
    users = ids.values[keep].tolist()
    profiles: dict[str, dict[str, str]] = {}
    for name, typed in fields.items():
        if name == "user_id":
            continue
        values = [v.strip() for v in to_str(table.columns[typed])[keep].tolist()]
        profiles[_PROFILE_RENAMES.get(name, name)] = dict(zip(users, values, strict=True))
    return profiles


def read_recbole(
    path: str | Path, *, on_error: str = "raise", category_field: str | None = None
) -> ReadResult:
    """A RecBole atomic-file dataset as an EventLog.

    Args:
        path: the dataset directory (holding exactly one .inter file) or the .inter file;
            <name>.item and <name>.user beside it are used when present.
        on_error: "raise" (default) or "skip" malformed rows.
        category_field: the item field holding the category (without ":type"); None: the
            first of CATEGORY_FIELDS present.

    The .inter file must have user_id, item_id and timestamp fields; rating is optional.
    """
    log = ProblemLog(on_error)
    inter = _inter_file(path)
    fields = _typed_names(inter)
    ratings = read_ratings(
        inter, _LAYOUT,
        (_need(fields, "user_id", inter), _need(fields, "item_id", inter), fields.get("rating"),
         _need(fields, "timestamp", inter)),
        log,
    )
    item_path = inter.with_suffix(".item")
    categories = _categories(item_path, category_field, log) if item_path.exists() else {}
    user_path = inter.with_suffix(".user")
    profiles = _profiles(user_path, log) if user_path.exists() else {}
    return assemble(f"recbole:{inter.stem}", ratings, categories, profiles, log)
