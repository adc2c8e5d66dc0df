"""MovieLens readers for GroupLens' own layouts: ml-100k, ml-1m and ml-latest.

Category is the movie's first genre in the file's own order ("Animation" for Toy Story in
every layout); "" when the movie has no genre or is missing from the movie file. ML-100K's
own "unknown" genre flag is kept as the category "unknown". Profile columns gender, age,
occupation and zip come from the user file where the layout has one (ml-1m's age and
occupation are GroupLens' codes, kept as text); users missing from it get "".

Example:
    >>> result = read_movielens("~/.cache/dinrec/movielens-100k/ml-100k")  # doctest: +SKIP
    >>> result.log.category[:3], result.stats.skipped  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from dinrec.data.readers.columns import parse_ids, to_str
from dinrec.data.readers.delimited import TextLayout, iter_fields, read_delimited
from dinrec.data.readers.problems import Check, ProblemLog, ReadResult, RowProblem, screen
from dinrec.data.readers.ratings import assemble, read_ratings
from dinrec.data.readers.recbole import read_recbole

# u.genre's order; u.item carries one 0/1 flag per genre in this order after 5 fixed fields.
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
PROFILE_COLUMNS: tuple[str, ...] = ("gender", "age", "occupation", "zip")
# ml-latest's placeholder for a movie without genres; mapped to "" like a missing genre.
NO_GENRES = "(no genres listed)"
LAYOUTS: tuple[str, ...] = ("100k", "1m", "latest", "recbole")
_RATING_FILES = {"u.data": "100k", "ratings.dat": "1m", "ratings.csv": "latest"}


def _users(path: Path, layout: TextLayout, order: tuple[str, ...],
           log: ProblemLog) -> dict[str, dict[str, str]]:
    """Profile column -> {user: value} from a user file whose fields are `order`."""
    profiles: dict[str, dict[str, str]] = {name: {} for name in PROFILE_COLUMNS}
    if not path.exists():
        return {}
    log.add_file(path)
    for line, fields in iter_fields(path, layout, len(order), log):
        record = dict(zip(order, (f.strip() for f in fields), strict=True))
        if not record["user"]:
            log.report(RowProblem(str(path), line, "user", "empty id (got '')"))
            continue
        for name in PROFILE_COLUMNS:
            profiles[name][record["user"]] = record[name]
    return profiles


def _base_dir(path: str | Path, rating_file: str) -> tuple[Path, Path]:
    """(directory, ratings file) from either of them."""
    path = Path(path).expanduser()
    if path.is_dir():
        ratings = path / rating_file
        if not ratings.exists():
            raise FileNotFoundError(f"{path}: no {rating_file} in this directory")
        return path, ratings
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path.parent, path


def read_movielens_100k(path: str | Path, *, on_error: str = "raise") -> ReadResult:
    """MovieLens-100K from GroupLens' ml-100k folder: u.data, u.item (latin-1), u.user.

    Args:
        path: the ml-100k directory, or a ratings file in its layout (u.data, u1.base, ...)
            whose u.item and u.user sit beside it.
        on_error: "raise" (default) or "skip" malformed rows.
    """
    log = ProblemLog(on_error)
    folder, ratings_path = _base_dir(path, "u.data")
    ratings = read_ratings(
        ratings_path, TextLayout("\t", ("user", "item", "rating", "timestamp")),
        ("user", "item", "rating", "timestamp"), log,
    )
    categories: dict[str, str] = {}
    item_path = folder / "u.item"
    if item_path.exists():
        log.add_file(item_path)
        n_fields = 5 + len(ML100K_GENRES)
        for line, fields in iter_fields(item_path, TextLayout("|", (), "latin-1"), n_fields, log):
            flags = [f.strip() for f in fields[5:]]
            if any(f not in ("0", "1") for f in flags):
                log.report(RowProblem(str(item_path), line, "genre flags",
                                      f"flags must be 0 or 1 (got {'|'.join(flags)!r})"))
                continue
            genres = [g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1"]
            categories[fields[0].strip()] = genres[0] if genres else ""
    profiles = _users(folder / "u.user", TextLayout("|", ()),
                      ("user", "age", "gender", "occupation", "zip"), log)
    return assemble("movielens-100k", ratings, categories, profiles, log)


def read_movielens_1m(path: str | Path, *, on_error: str = "raise") -> ReadResult:
    """MovieLens-1M (also 10M) from GroupLens' layout: "::"-separated latin-1 .dat files.

    Args:
        path: the ml-1m directory, or its ratings.dat (movies.dat and users.dat beside it).
        on_error: "raise" (default) or "skip" malformed rows.
    """
    log = ProblemLog(on_error)
    folder, ratings_path = _base_dir(path, "ratings.dat")
    ratings = read_ratings(
        ratings_path, TextLayout("::", ("user", "item", "rating", "timestamp"), "latin-1"),
        ("user", "item", "rating", "timestamp"), log,
    )
    categories = read_movies_dat(folder / "movies.dat", log)
    profiles = read_users_dat(folder / "users.dat", log)
    return assemble("movielens-1m", ratings, categories, profiles, log)


def read_movies_dat(path: Path, log: ProblemLog) -> dict[str, str]:
    """{movie id: first genre} from ml-1m's movies.dat (MovieID::Title::Genre|Genre...)."""
    categories: dict[str, str] = {}
    if not path.exists():
        return categories
    log.add_file(path)
    for _line, fields in iter_fields(path, TextLayout("::", (), "latin-1"), 3, log):
        first = fields[2].split("|", 1)[0].strip()
        categories[fields[0].strip()] = "" if first == NO_GENRES else first
    return categories


def read_users_dat(path: Path, log: ProblemLog) -> dict[str, dict[str, str]]:
    """Profile column -> {user: value} from ml-1m's users.dat (UserID::Gender::Age::...)."""
    return _users(path, TextLayout("::", (), "latin-1"),
                  ("user", "gender", "age", "occupation", "zip"), log)


def read_movielens_latest(path: str | Path, *, on_error: str = "raise") -> ReadResult:
    """MovieLens latest / 20M / 25M: ratings.csv with a header, optional movies.csv.

    Args:
        path: the folder, or its ratings.csv (movies.csv beside it gives the genres).
        on_error: "raise" (default) or "skip" malformed rows.
    """
    log = ProblemLog(on_error)
    folder, ratings_path = _base_dir(path, "ratings.csv")
    csv_layout = TextLayout(",", None, "utf-8", quoting=True)
    ratings = read_ratings(ratings_path, csv_layout,
                           ("userId", "movieId", "rating", "timestamp"), log)
    categories: dict[str, str] = {}
    movies_path = folder / "movies.csv"
    if movies_path.exists():
        movies = read_delimited(movies_path, csv_layout, ["movieId", "genres"])
        log.add_file(movies_path)
        ids = parse_ids(movies.columns["movieId"])
        check = Check("movieId", ids, movies.columns["movieId"])
        keep = screen(movies, movies.num_rows, [check], movies.rejected_problems(), log)
        genres = to_str(movies.columns["genres"])[keep]
        for movie, genre in zip(ids.values[keep].tolist(), genres.tolist(), strict=True):
            first = genre.split("|", 1)[0].strip()
            categories[movie] = "" if first == NO_GENRES else first
    return assemble("movielens-latest", ratings, categories, {}, log)


def detect_layout(path: str | Path) -> str:
    """Which MovieLens layout a directory (or ratings file) is in: one of LAYOUTS."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix == ".inter":
            return "recbole"
        if path.name in _RATING_FILES:
            return _RATING_FILES[path.name]
        if path.name.startswith("u") and (path.parent / "u.item").exists():
            return "100k"
        raise ValueError(f"{path}: not a MovieLens ratings file (expected one of "
                         f"{', '.join(_RATING_FILES)} or a RecBole .inter file)")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    for name, layout in _RATING_FILES.items():
        if (path / name).exists():
            return layout
    if any(path.glob("*.inter")):
        return "recbole"
    raise ValueError(f"{path}: no MovieLens layout found (looked for "
                     f"{', '.join(_RATING_FILES)} and RecBole *.inter)")


def read_movielens(
    path: str | Path, *, layout: str | None = None, on_error: str = "raise"
) -> ReadResult:
    """MovieLens in any supported layout, detected from the directory unless given.

    Args:
        path: a dataset directory or its ratings file.
        layout: "100k", "1m", "latest" or "recbole"; None: detect (u.data -> 100k,
            ratings.dat -> 1m, ratings.csv -> latest, *.inter -> recbole).
        on_error: "raise" (default) or "skip" malformed rows.
    """
    chosen = layout if layout is not None else detect_layout(path)
    readers = {"100k": read_movielens_100k, "1m": read_movielens_1m,
               "latest": read_movielens_latest, "recbole": read_recbole}
    if chosen not in readers:
        raise ValueError(f"unknown MovieLens layout {chosen!r}; choose one of {LAYOUTS}")
    return readers[chosen](path, on_error=on_error)
