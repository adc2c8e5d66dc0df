"""MovieLens readers: GroupLens ml-100k / ml-1m / ml-latest layouts and RecBole atomic files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dinrec.data.readers import MalformedRowError, read_log, read_log_with_stats
from dinrec.data.readers.movielens import (
    detect_layout,
    read_movielens_1m,
    read_movies_dat,
    read_users_dat,
)
from dinrec.data.readers.problems import ProblemLog


def _row(log, i: int) -> tuple:
    return (str(log.user[i]), str(log.item[i]), float(log.rating[i]), int(log.timestamp[i]))


def test_recbole_ml100k_has_every_rating_with_genre_and_profile(shared_file) -> None:
    folder = shared_file("ml-100k")
    log, stats = read_log_with_stats("recbole", folder)
    assert len(log) == 100_000 and stats.skipped == 0
    assert stats.source == log.source == "recbole:ml-100k"
    assert len(np.unique(log.user)) == 943 and len(np.unique(log.item)) == 1682
    assert _row(log, 0) == ("196", "242", 3.0, 881250949)
    assert _row(log, len(log) - 1) == ("12", "203", 3.0, 879959583)
    assert int(log.rating.astype(np.int64).sum()) == 352_986
    assert log.timestamp.dtype == np.int64 and log.rating.dtype == np.float32
    assert log.category[0] == "Comedy"  # 242 Kolya: class "Comedy"
    assert set(log.category[log.item == "1"]) == {"Animation"}  # Toy Story
    assert set(log.category[log.item == "267"]) == {"unknown"}
    assert sorted(log.profile) == ["age", "gender", "occupation", "zip"]
    first_user = {k: str(v[0]) for k, v in log.profile.items()}
    assert first_user == {"age": "49", "gender": "M", "occupation": "writer", "zip": "55105"}


def test_movielens_detects_the_recbole_layout(shared_file) -> None:
    folder = shared_file("ml-100k")
    assert detect_layout(folder) == "recbole"
    assert read_log("movielens", folder).source == "recbole:ml-100k"


def test_reading_ml100k_takes_well_under_a_second(shared_file) -> None:
    folder = shared_file("ml-100k")
    read_log("movielens", folder)  # warm-up: pyarrow's lazy imports happen on first use
    start = time.perf_counter()
    read_log("movielens", folder)
    assert time.perf_counter() - start < 1.0


def test_latest_small_ratings_csv(shared_file) -> None:
    folder = shared_file("movielens-latest-small")
    log, stats = read_log_with_stats("movielens", folder)
    assert stats.source == "movielens-latest" and len(log) == 100_836
    assert len(np.unique(log.user)) == 610 and len(np.unique(log.item)) == 9724
    assert _row(log, 0) == ("1", "1", 4.0, 964982703)
    assert _row(log, len(log) - 1) == ("610", "170875", 3.0, 1493846415)
    assert int((log.rating * 2).astype(np.int64).sum()) == 706_166  # half stars
    assert set(log.category) == {""}  # no movies.csv beside it


def test_ml1m_side_files_are_parsed_in_full(shared_file) -> None:
    problems = ProblemLog("raise")
    categories = read_movies_dat(shared_file("movielens-1m/movies.dat"), problems)
    profiles = read_users_dat(shared_file("movielens-1m/users.dat"), problems)
    assert len(categories) == 3883 and len(profiles["gender"]) == 6040
    assert categories["1"] == "Animation" and categories["3952"] == "Drama"
    assert [profiles[k]["6040"] for k in ("gender", "age", "occupation", "zip")] == [
        "M", "25", "6", "11106"]


def test_ml1m_ratings_join_real_movies_and_users(tmp_path: Path, shared_file) -> None:
    for name in ("movies.dat", "users.dat"):
        (tmp_path / name).symlink_to(shared_file(f"movielens-1m/{name}"))
    (tmp_path / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::1::3::978302109\n\n6040::3952::4::956703932\n9999::99999::2::1\n"
    )
    log = read_log("movielens", tmp_path)
    assert log.source == "movielens-1m" and len(log) == 4
    assert list(log.category) == ["Drama", "Animation", "Drama", ""]
    assert list(log.profile["gender"]) == ["F", "F", "M", ""]
    assert list(log.profile["occupation"]) == ["10", "10", "6", ""]


def test_ml100k_grouplens_layout(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t4\t874965758\n2\t20\t1\t876893171\n3\t30\t5\t1\n")
    flags = {"10": [0, 0, 0, 1, 1] + [0] * 14, "20": [1] + [0] * 18, "30": [0] * 19}
    (tmp_path / "u.item").write_bytes("".join(
        f"{i}|Caf\u00e9 ({i}) (1995)|01-Jan-1995||http://x|" + "|".join(map(str, f)) + "\n"
        for i, f in flags.items()).encode("latin-1"))
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    log = read_log("movielens", tmp_path)
    assert log.source == "movielens-100k"
    assert list(log.category) == ["Animation", "unknown", ""]
    assert list(log.profile["zip"]) == ["85711", "94043", ""]
    assert list(log.profile["age"]) == ["24", "53", ""]


def test_latest_movies_csv_gives_first_genre(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,2.5,964981247\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n'
        "2,Nothing (2019),(no genres listed)\n")
    log = read_log("movielens-latest", tmp_path / "ratings.csv")
    assert list(log.category) == ["Adventure", ""]
    assert list(log.rating) == [4.0, 2.5]


def test_bad_timestamp_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("1\t10\t4\t874965758\n2\t20\t1\t876893171\n3\t30\t5\tyesterday\n")
    with pytest.raises(MalformedRowError) as caught:
        read_log("movielens-100k", tmp_path)
    message = str(caught.value)
    assert str(path) in message and "line 3" in message and "'timestamp'" in message
    assert "yesterday" in message
    assert caught.value.problem.line == 3


def test_line_numbers_count_blank_lines_and_the_header(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,1,4,1\n\n1,2,five,2\n")
    with pytest.raises(ValueError, match=r"line 4, column 'rating'.*'five'"):
        read_log("movielens", path)


def test_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::1::3\n")
    with pytest.raises(MalformedRowError, match=r"ratings\.dat, line 2: expected 4 fields"):
        read_movielens_1m(tmp_path)


def test_skip_mode_drops_and_counts_malformed_rows(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text(
        "1\t10\t4\t874965758\n2\t20\tx\t876893171\n3\t30\n\t40\t5\t1\n5\t50\t5\t2\n")
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|broken\n")
    log, stats = read_log_with_stats("movielens-100k", tmp_path, on_error="skip")
    assert list(log.user) == ["1", "5"]
    assert stats.skipped == 4 and stats.rows == 2
    assert [(p.line, p.column) for p in stats.problems] == [
        (2, "rating"), (3, None), (4, "user"), (2, None)]
    assert "4 malformed row(s) skipped" in stats.summary()


def test_layout_detection_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no MovieLens layout"):
        detect_layout(tmp_path)
    with pytest.raises(ValueError, match="unknown MovieLens layout"):
        read_log("movielens", tmp_path, layout="10m")
