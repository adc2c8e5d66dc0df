"""Taobao UserBehavior.csv reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinrec.data.readers import MalformedRowError, read_log, read_log_with_stats

SAMPLE = "taobao-userbehavior-sample/UserBehavior_head.csv"


def test_real_sample_counts_and_values(shared_file) -> None:
    log, stats = read_log_with_stats("taobao", shared_file(SAMPLE))
    assert len(log) == 4321 and stats.skipped == 0 and log.source == "taobao"
    assert len(np.unique(log.user)) == 43 and len(np.unique(log.category)) == 567
    kinds, counts = np.unique(log.behavior, return_counts=True)
    assert dict(zip(kinds.tolist(), counts.tolist(), strict=True)) == {
        "pv": 3926, "cart": 190, "fav": 128, "buy": 77}
    first = (log.user[0], log.item[0], log.category[0], log.behavior[0], log.timestamp[0])
    assert first == ("1", "2268318", "2520377", "pv", 1511544070)
    last = (log.user[-1], log.item[-1], log.category[-1], log.behavior[-1], log.timestamp[-1])
    assert last == ("1000172", "4354614", "2355072", "pv", 1512008039)
    assert log.rating is None and log.label is None


def test_behavior_filter(shared_file) -> None:
    log = read_log("taobao", shared_file(SAMPLE), behaviors=("buy",))
    assert len(log) == 77 and set(log.behavior) == {"buy"}
    assert (log.user[0], log.item[0], log.timestamp[0]) == ("100", "1603476", 1511579908)
    with pytest.raises(ValueError, match="unknown behavior 'click'"):
        read_log("taobao", shared_file(SAMPLE), behaviors=("click",))


def test_unknown_behavior_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2,3,pv,1511544070\n1,2,3,click,1511544071\n")
    with pytest.raises(MalformedRowError) as caught:
        read_log("taobao", path)
    assert str(path) in str(caught.value)
    assert "line 2, column 'behavior'" in str(caught.value)


def test_skip_mode_counts_each_bad_row_once(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2,3,pv,1511544070\n,2,3,pv,1\n1,2,3,buy,soon\n1,2,3,pv\n4,5,6,fav,7\n")
    log, stats = read_log_with_stats("taobao", path, on_error="skip")
    assert list(log.user) == ["1", "4"] and stats.skipped == 3
    assert [(p.line, p.column) for p in stats.problems] == [
        (2, "user"), (3, "timestamp"), (4, None)]
