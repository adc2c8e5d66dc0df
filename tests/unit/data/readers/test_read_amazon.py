"""Amazon (SNAP) reviews reader: JSON lines, Python-literal meta files, DIN's category rule."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from dinrec.data.readers import MalformedRowError, read_log, read_log_with_stats

REAL_SAMPLE = "amazon-electronics-fixtures/paddlerec_reviews_Electronics_5_head.json.gz"
# Old SNAP meta lines are Python literals, as in the original meta_Electronics.json.
META_LINES = [
    "{'asin': '0972683275', 'title': \"Mount's Kit\", 'related': {'also_bought': ['B00']}, "
    "'categories': [['Electronics', 'Accessories & Supplies', 'TV Mounts'], "
    "['Home', 'Wall Brackets']]}",
    '{"asin": "1400501466", "categories": [["Electronics", "Computers", "Tablets"]]}',
    "{'asin': '0528881469', 'categories': []}",
    "{'asin': 'UNREVIEWED', 'categories': [['Never', 'Parsed']]}",
]


def _review(user: str, item: str, overall: object = 5.0, time: object = 1370131200) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "reviewerName": "x",
                       "overall": overall, "unixReviewTime": time, "reviewTime": "06 2, 2013"})


def _write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_real_reviews_sample_without_meta(shared_file) -> None:
    log, stats = read_log_with_stats("amazon", shared_file(REAL_SAMPLE))
    assert len(log) == 290 and stats.skipped == 0
    assert len(np.unique(log.user)) == 289 and len(np.unique(log.item)) == 6
    assert (log.user[0], log.item[0], log.rating[0], log.timestamp[0]) == (
        "AO94DHGC771SJ", "0528881469", 5.0, 1370131200)
    assert (log.user[-1], log.item[-1], log.rating[-1], log.timestamp[-1]) == (
        "A28OZBLQKKYGOR", "1400501520", 4.0, 1395273600)
    assert float(log.rating.sum()) == 1257.0
    assert set(log.category) == {""}  # no meta file for this sample


def test_real_reviews_with_a_literal_meta_file(tmp_path: Path, shared_file) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text("\n".join(META_LINES) + "\n")
    log = read_log("amazon", shared_file(REAL_SAMPLE), meta=meta)
    # DIN's rule: the last entry of the last categories list.
    assert int((log.category == "Wall Brackets").sum()) == 219
    assert int((log.category == "Tablets").sum()) == 43
    assert set(log.category[log.item == "0528881469"]) == {""}  # empty categories
    first = read_log("amazon", shared_file(REAL_SAMPLE), meta=meta, category_list="first")
    assert int((first.category == "TV Mounts").sum()) == 219


def test_directory_finds_reviews_and_meta_by_name(tmp_path: Path) -> None:
    _write_gz(tmp_path / "reviews_Electronics_5.json.gz",
              [_review("u1", "0972683275"), _review("u2", "1400501466", 3, 1290643200)])
    _write_gz(tmp_path / "meta_Electronics.json.gz", META_LINES)
    log, stats = read_log_with_stats("amazon", tmp_path)
    assert log.source == "amazon:Electronics" and len(stats.files) == 2
    assert list(log.category) == ["Wall Brackets", "Tablets"]
    assert list(log.rating) == [5.0, 3.0] and list(log.timestamp) == [1370131200, 1290643200]


def test_2018_meta_flat_category_list(tmp_path: Path) -> None:
    reviews = _write_gz(tmp_path / "reviews_Books_5.json.gz", [_review("u1", "a")])
    (tmp_path / "meta_Books.json").write_text(
        '{"asin": "a", "category": ["Books", "Literature & Fiction"]}\n')
    assert list(read_log("amazon", reviews).category) == ["Literature & Fiction"]


def test_missing_field_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "reviews_Books_5.json.gz",
                     [_review("u1", "a"), json.dumps({"reviewerID": "u2", "asin": "b",
                                                      "overall": 4.0})])
    with pytest.raises(MalformedRowError) as caught:
        read_log("amazon", path)
    assert str(path) in str(caught.value)
    assert "line 2" in str(caught.value) and "'unixReviewTime'" in str(caught.value)


def test_non_numeric_rating_and_skip_mode(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "reviews_Books_5.json.gz", [
        _review("u1", "a"), _review("u2", "b", overall="five"), "not json at all",
        _review("u3", "c", time="2013-06-02"), _review("u4", "d"),
    ])
    with pytest.raises(MalformedRowError, match=r"line 2, column 'overall'.*'five'"):
        read_log("amazon", path)
    log, stats = read_log_with_stats("amazon", path, on_error="skip")
    assert list(log.user) == ["u1", "u4"]
    assert stats.skipped == 3
    assert [(p.line, p.column) for p in stats.problems] == [
        (2, "overall"), (3, None), (4, "unixReviewTime")]


def test_meta_lines_are_never_evaluated(tmp_path: Path) -> None:
    reviews = _write_gz(tmp_path / "reviews_Books_5.json.gz", [_review("u1", "a")])
    meta = tmp_path / "meta_Books.json"
    flag = tmp_path / "pwned"
    meta.write_text(f"{{'asin': 'a', 'x': open({str(flag)!r}, 'w')}}\n")
    with pytest.raises(MalformedRowError, match=r"meta_Books\.json, line 1"):
        read_log("amazon", reviews)
    assert not flag.exists()
    log, stats = read_log_with_stats("amazon", reviews, on_error="skip")
    assert list(log.category) == [""] and stats.skipped == 1


def test_bad_category_list_option() -> None:
    with pytest.raises(ValueError, match="category_list"):
        read_log("amazon", "nowhere.json", category_list="middle")
