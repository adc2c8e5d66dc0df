"""The reader registry and the behaviour shared by all readers (errors, skip mode, lines)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dinrec.data.events import EventLog
from dinrec.data.readers import (
    READERS,
    MalformedRowError,
    ReadStats,
    read_log,
    read_log_with_stats,
)

MAPPING = {"user": "u", "item": "i", "timestamp": "t"}


def test_registry_names() -> None:
    assert sorted(READERS) == sorted([
        "amazon", "movielens", "movielens-100k", "movielens-1m", "movielens-latest",
        "recbole", "table", "taobao"])


def test_unknown_source_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown log source 'criteo'; known: movielens"):
        read_log("criteo", "x")


def test_unknown_option_names_it_and_lists_the_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"reader 'taobao' has no option 'columns'.*behaviors"):
        read_log("taobao", tmp_path, columns={})


def test_unknown_on_error_value() -> None:
    with pytest.raises(ValueError, match=r"on_error must be one of \('raise', 'skip'\)"):
        read_log("taobao", "x.csv", on_error="ignore")


def test_read_log_returns_the_event_log_and_stats_come_separately(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i,t\na,x,1\n")
    assert isinstance(read_log("table", path, columns=MAPPING), EventLog)
    log, stats = read_log_with_stats("table", path, columns=MAPPING)
    assert isinstance(stats, ReadStats) and stats.rows == len(log) == 1
    assert stats.files == (str(path),) and stats.skipped == 0


def test_skip_mode_warns_with_the_count(tmp_path: Path, caplog) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i,t\na,x,1\nb,y,never\n,z,3\n")
    with caplog.at_level(logging.WARNING, logger="dinrec.data.readers"):
        log, stats = read_log_with_stats("table", path, columns=MAPPING, on_error="skip")
    assert len(log) == 1 and stats.skipped == 2
    assert "2 malformed row(s) skipped" in caplog.text


def test_raise_mode_reports_the_earliest_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    # Line 3's bad timestamp comes before line 4's empty user, though user is checked first.
    path.write_text("u,i,t\na,x,1\nb,y,never\n,z,3\n")
    with pytest.raises(MalformedRowError, match=r"line 3, column 't'"):
        read_log("table", path, columns=MAPPING)


def test_quoted_newlines_keep_line_numbers_right(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text('u,i,t\na,"two\nlines",1\nb,y,bad\n')
    with pytest.raises(MalformedRowError, match=r"line 4, column 't'"):
        read_log("table", path, columns=MAPPING)


def test_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"u,i,t\na,x,1\nb,\xff\xfe,2\n")
    with pytest.raises(MalformedRowError, match=r"line 3: not valid utf-8 text"):
        read_log("table", path, columns=MAPPING)


def test_empty_file_with_header_gives_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i,t\n")
    log = read_log("table", path, columns=MAPPING)
    assert len(log) == 0 and log.timestamp.dtype.name == "int64"
