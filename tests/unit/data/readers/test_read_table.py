"""Generic CSV/TSV/Parquet reader with a column mapping."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinrec.data.readers import MalformedRowError, read_log, read_log_with_stats

BOOKS = "ctr-lib-fixtures/torch-rechub/amazon_books_sample.csv"


def test_torch_rechub_books_sample(shared_file) -> None:
    log = read_log("table", shared_file(BOOKS), columns={
        "user": "user_id", "item": "item_id", "timestamp": "time", "rating": "label"})
    assert len(log) == 100 and log.source == "table:amazon_books_sample.csv"
    assert (log.user[0], log.item[0], log.timestamp[0], log.rating[0]) == ("1", "308223", 6183, 2)
    assert (log.user[3], log.item[3], log.rating[3]) == ("4", "216139", 1.0)
    assert int(log.rating.sum()) == 17 * 1 + 83 * 2
    assert set(log.category) == {""}


def test_label_outside_0_1_is_malformed(shared_file) -> None:
    path = shared_file(BOOKS)
    columns = {"user": "user_id", "item": "item_id", "label": "label"}
    with pytest.raises(MalformedRowError) as caught:
        read_log("table", path, columns=columns)
    assert str(path) in str(caught.value)
    assert "line 2, column 'label'" in str(caught.value)
    log, stats = read_log_with_stats("table", path, columns=columns, on_error="skip")
    assert len(log) == 17 and stats.skipped == 83 and set(log.label) == {1}


def test_ali_ccp_without_timestamps_keeps_file_order(shared_file) -> None:
    log = read_log("table", shared_file("ali-ccp-samples/ali_ccp_train_sample.csv"), columns={
        "user": "101", "item": "205", "category": "206", "label": "click",
        "profile": {"gender_code": "122"}})
    assert len(log) == 100
    assert list(log.timestamp[:3]) == [0, 1, 2] and int(log.timestamp[-1]) == 99
    assert int(log.label.sum()) == 7 and log.label.dtype == np.int8
    assert (log.user[0], log.item[0], log.category[0]) == ("1", "0", "1")
    assert list(log.profile) == ["gender_code"] and log.profile["gender_code"][0] == "1"


def test_fuxictr_parquet(shared_file) -> None:
    log = read_log("table", shared_file("ctr-lib-fixtures/fuxictr_tiny_parquet/train.parquet"),
                   columns={"user": "userid", "item": "adgroup_id", "category": "cate_id",
                            "label": "clk", "profile": ["age_level"]})
    assert len(log) == 100 and int(log.label.sum()) == 4
    assert list(log.user[:3]) == ["2", "1", "23"] and list(log.item[:3]) == ["12", "43", "42"]
    assert list(log.category[:3]) == ["8", "1", "36"]
    assert len(np.unique(log.user)) == 24


def test_headerless_tsv_with_column_names(shared_file) -> None:
    names = ["uid", "user_city", "item_id", "author_id", "item_city", "channel", "finish",
             "like", "music_id", "device", "time", "duration_time"]
    log = read_log("table", shared_file("ctr-lib-fixtures/deepctr-torch/byterec_sample.txt"),
                   columns={"user": "uid", "item": "item_id", "timestamp": "time",
                            "label": "finish", "profile": ["user_city"]},
                   column_names=names, delimiter="\t")
    assert len(log) == 200 and int(log.label.sum()) == 76
    assert (log.user[0], log.item[0], log.timestamp[0]) == ("37448", "567569", 53085738314)
    assert log.profile["user_city"][0] == "115"


def test_timestamp_formats(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i,when\na,x,2017-11-25 10:00:00\nb,y,2017-11-26 00:00:01\n")
    mapping = {"user": "u", "item": "i", "timestamp": "when"}
    explicit = read_log("table", path, columns=mapping, timestamp_format="%Y-%m-%d %H:%M:%S")
    assert list(explicit.timestamp) == [1511604000, 1511654401]
    assert list(read_log("table", path, columns=mapping).timestamp) == [1511604000, 1511654401]
    with pytest.raises(MalformedRowError, match=r"line 2, column 'when'"):
        read_log("table", path, columns=mapping, timestamp_format="%d/%m/%Y")
    millis = tmp_path / "ms.csv"
    millis.write_text("u,i,when\na,x,1511604000123\n")
    ms = read_log("table", millis, columns=mapping, timestamp_format="unix_ms")
    assert list(ms.timestamp) == [1511604000]


def test_gzipped_tsv_is_detected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('u\ti\tt\tnote\n"a"\tx, y\t5\tsay "hi"\n')
    log = read_log("table", path, columns={"user": "u", "item": "i", "timestamp": "t",
                                           "profile": ["note"]})
    assert (log.user[0], log.item[0], log.timestamp[0]) == ("a", "x, y", 5)


def test_unknown_mapping_key_is_named() -> None:
    with pytest.raises(ValueError, match="unknown column mapping key 'time'"):
        read_log("table", "any.csv", columns={"user": "u", "item": "i", "time": "t"})
    with pytest.raises(ValueError, match="needs 'item'"):
        read_log("table", "any.csv", columns={"user": "u"})


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid,iid\n1,2\n")
    with pytest.raises(ValueError) as caught:
        read_log("table", path, columns={"user": "uid", "item": "iid", "timestamp": "ts"})
    assert str(path) in str(caught.value) and "'ts'" in str(caught.value)
    parquet = tmp_path / "log.parquet"
    pq.write_table(pa.table({"uid": [1], "iid": [2]}), parquet)
    with pytest.raises(ValueError, match=r"log\.parquet: no column 'cid'"):
        read_log("table", parquet, columns={"user": "uid", "item": "iid", "category": "cid"})


def test_parquet_problems_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({
        "uid": pa.array([1.0, None, 3.0]), "iid": ["a", "b", "c"],
        "ts": pa.array([1, 2, None], pa.int64()), "stars": [4.5, 3.0, 1.0],
    }), path)
    columns = {"user": "uid", "item": "iid", "timestamp": "ts", "rating": "stars"}
    with pytest.raises(MalformedRowError, match=r"log\.parquet, row 2, column 'uid'"):
        read_log("table", path, columns=columns)
    log, stats = read_log_with_stats("table", path, columns=columns, on_error="skip")
    assert list(log.user) == ["1"] and stats.skipped == 2  # 1.0 is the id "1"
    assert [(p.unit, p.line, p.column) for p in stats.problems] == [
        ("row", 2, "uid"), ("row", 3, "ts")]


def test_parquet_timestamp_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    when = pa.array([1_511_604_000_500_000_000], pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table({"u": ["a"], "i": ["x"], "when": when}), path)
    log = read_log("table", path, columns={"user": "u", "item": "i", "timestamp": "when"})
    assert list(log.timestamp) == [1511604000]
