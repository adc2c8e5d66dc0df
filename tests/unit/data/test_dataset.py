"""The dataset directory: Parquet contents, dataset.json, determinism, feature columns, numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinrec.data.dataset import (
    DatasetMeta,
    feature_columns,
    load_dataset,
    to_numpy,
    write_dataset,
)
from dinrec.data.events import EventLog
from dinrec.data.protocols import TimeSplit, build_samples
from dinrec.data.vocabulary import Vocabularies
from dinrec.feature_column import SparseFeat, VarLenSparseFeat, get_feature_names


def rating_log() -> EventLog:
    """u: a b a c over time; v: b then d (d only after the cutoff); w only after it."""
    rows = [("u", "a", "x", 1, 5, "F"), ("u", "b", "y", 2, 2, "F"), ("u", "a", "x", 3, 4, "F"),
            ("u", "c", "y", 7, 5, "F"), ("v", "b", "y", 4, 1, "M"), ("v", "d", "z", 8, 5, "M"),
            ("w", "a", "x", 9, 3, "M")]
    user, item, cate, ts, rating, gender = zip(*rows, strict=True)
    return EventLog(user=np.array(user), item=np.array(item), category=np.array(cate),
                    timestamp=np.array(ts, dtype=np.int64),
                    rating=np.array(rating, dtype=np.float32),
                    profile={"gender": np.array(gender)}, source="toy")


def write_rating(out: Path, maxlen: int = 3, row_group_size: int = 65_536) -> DatasetMeta:
    samples = build_samples("rating", rating_log(), maxlen=maxlen, split=TimeSplit(cutoff=5))
    vocabs = Vocabularies.fit(samples.fit_values)
    return write_dataset(out, samples, vocabs, row_group_size=row_group_size)


def test_parquet_rows_hold_encoded_ids_and_padded_histories(tmp_path) -> None:
    write_rating(tmp_path)
    train = pq.read_table(tmp_path / "train.parquet").to_pydict()
    # Training items: a twice, b twice -> a=2, b=3 (tie broken by raw id); x=2, y=3.
    assert train["item_id"] == [2, 3, 2, 3]
    assert train["cate_id"] == [2, 3, 2, 3]
    assert train["user_id"] == [2, 2, 2, 3]  # u three times, v once
    assert train["gender"] == [2, 2, 2, 3]
    assert train["hist_item_id"] == [[0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 0, 0]]
    assert train["hist_cate_id"] == [[0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 0, 0]]
    assert train["hist_len"] == [0, 1, 2, 0]
    assert train["label"] == [1, 0, 1, 0]
    assert train["timestamp"] == [1, 2, 3, 4]


def test_test_split_maps_unseen_ids_to_unknown_but_keeps_user_key(tmp_path) -> None:
    write_rating(tmp_path, maxlen=2)
    test = pq.read_table(tmp_path / "test.parquet").to_pydict()
    assert test["item_id"] == [1, 1, 2]  # c and d unseen in training; a known
    assert test["cate_id"] == [3, 1, 2]  # z unseen
    assert test["user_id"] == [2, 3, 1]  # w unseen in training
    assert test["user_key"] == [0, 1, 2]  # u, v, w stay apart for GAUC
    # Most recent 2, in time order: u's history before c is (b, a).
    assert test["hist_item_id"] == [[3, 2], [3, 0], [0, 0]]


def test_parquet_schema_types(tmp_path) -> None:
    write_rating(tmp_path)
    schema = pq.read_schema(tmp_path / "train.parquet")
    assert schema.names == ["user_key", "user_id", "gender", "item_id", "cate_id",
                            "hist_item_id", "hist_cate_id", "hist_len", "label", "timestamp"]
    hist_type = schema.field("hist_item_id").type
    # Encoded ids are stored as int32 (they are vocabulary indices); readers widen them.
    assert pa.types.is_list(hist_type) and hist_type.value_type == pa.int32()
    assert not hist_type.value_field.nullable  # lets Arrow skip validity bitmaps
    assert schema.field("item_id").type == pa.int32()
    assert schema.field("hist_len").type == pa.int32()
    assert schema.field("timestamp").type == pa.int64()
    assert schema.field("label").type == pa.int8()
    assert schema.metadata is None or b"pandas" not in schema.metadata
    x, _ = to_numpy(pq.read_table(tmp_path / "train.parquet"))
    assert {a.dtype for a in x.values()} == {np.dtype(np.int64)}


def test_ids_beyond_int32_are_stored_as_int64() -> None:
    from dinrec.data.parquet.write_options import id_storage_type

    assert id_storage_type(2**31 - 1) == pa.int32()
    assert id_storage_type(2**31) == pa.int64()


def test_history_lists_are_lz4_and_other_columns_zstd_with_statistics(tmp_path) -> None:
    write_rating(tmp_path)
    meta = pq.ParquetFile(tmp_path / "train.parquet").metadata
    chunks = {meta.row_group(0).column(j).path_in_schema: meta.row_group(0).column(j)
              for j in range(meta.num_columns)}
    codecs = {path: chunk.compression for path, chunk in chunks.items()}
    assert codecs.pop("hist_item_id.list.element") == "LZ4"
    assert codecs.pop("hist_cate_id.list.element") == "LZ4"
    assert set(codecs.values()) == {"ZSTD"} and len(codecs) == 8
    # The streaming loader narrows ids to int32 from these min/max statistics.
    assert all(chunk.statistics.has_min_max for chunk in chunks.values())
    # History lists are PLAIN (faster to decode); the scalar columns use dictionaries.
    for path, chunk in chunks.items():
        dictionary = chunk.dictionary_page_offset is not None
        assert dictionary == (not path.endswith(".list.element")), path


def test_dataset_json_contents(tmp_path) -> None:
    write_rating(tmp_path)
    data = json.loads((tmp_path / "dataset.json").read_text(encoding="utf-8"))
    assert data == {
        "format": "dinrec.dataset", "format_version": 1, "protocol": "rating",
        "options": {"maxlen": 3, "threshold": 4.0, "history": "all",
                    "split": {"test_fraction": None, "cutoff": 5}},
        "maxlen": 3,
        "vocabulary_sizes": {"user_id": 4, "item_id": 4, "cate_id": 4, "gender": 4},
        "profile_columns": ["gender"],
        "counts": {
            "train": {"samples": 4, "positives": 2, "users": 2, "items": 2,
                      "mean_hist_len": 0.75},
            # histories of c, d, a(w): 3, 1 and 0 events.
            "test": {"samples": 3, "positives": 2, "users": 3, "items": 3,
                     "mean_hist_len": 1.333333},
        },
        "source": "toy", "row_group_size": 65536,
    }
    assert load_dataset(tmp_path).meta == DatasetMeta.from_dict(data)


def test_same_input_and_seed_give_byte_identical_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    log = EventLog(user=rng.integers(0, 20, n).astype(str),
                   item=rng.integers(0, 60, n).astype(str),
                   category=rng.integers(0, 5, n).astype(str),
                   timestamp=rng.integers(0, 1000, n).astype(np.int64))
    names = ["train.parquet", "test.parquet", "vocab.json", "dataset.json"]
    outputs = []
    for out in (tmp_path / "one", tmp_path / "two"):
        samples = build_samples("next-item", log, maxlen=5, seed=4)
        write_dataset(out, samples, Vocabularies.fit(samples.fit_values), row_group_size=64)
        outputs.append([(out / name).read_bytes() for name in names])
    assert outputs[0] == outputs[1]
    assert pq.ParquetFile(tmp_path / "one" / "train.parquet").metadata.num_row_groups > 1


def test_existing_dataset_is_not_overwritten_by_default(tmp_path) -> None:
    write_rating(tmp_path)
    with pytest.raises(FileExistsError):
        write_rating(tmp_path)


def test_load_rejects_other_format_versions(tmp_path) -> None:
    meta = write_rating(tmp_path)
    with pytest.raises(ValueError, match="format_version"):
        DatasetMeta.from_dict({**meta.to_dict(), "format_version": 99})
    with pytest.raises(ValueError, match="unknown keys"):
        DatasetMeta.from_dict({**meta.to_dict(), "extra": 1})


def test_feature_columns_share_tables_and_name_the_history(tmp_path) -> None:
    write_rating(tmp_path)
    columns, history = feature_columns(tmp_path, embedding_dim=8)
    assert history == ["item_id", "cate_id"]
    assert columns[:4] == [SparseFeat("user_id", 4, embedding_dim=8),
                           SparseFeat("gender", 4, embedding_dim=8),
                           SparseFeat("item_id", 4, embedding_dim=8),
                           SparseFeat("cate_id", 4, embedding_dim=8)]
    hist_item, hist_cate = columns[4:]
    assert isinstance(hist_item, VarLenSparseFeat) and isinstance(hist_cate, VarLenSparseFeat)
    assert (hist_item.name, hist_item.embedding_name, hist_item.maxlen) == (
        "hist_item_id", "item_id", 3)
    assert (hist_cate.name, hist_cate.embedding_name, hist_cate.vocabulary_size) == (
        "hist_cate_id", "cate_id", 4)
    assert get_feature_names(columns) == ["user_id", "gender", "item_id", "cate_id",
                                          "hist_item_id", "hist_cate_id"]


def test_feature_columns_length_name_and_no_profile(tmp_path) -> None:
    meta = write_rating(tmp_path)
    columns, _ = feature_columns(meta, use_profile=False, length_name="hist_len")
    assert get_feature_names(columns) == ["user_id", "item_id", "cate_id", "hist_item_id",
                                          "hist_len", "hist_cate_id"]
    x, _ = load_dataset(tmp_path).to_numpy("train", get_feature_names(columns))
    assert x["hist_len"].tolist() == [0, 1, 2, 0]


def test_to_numpy_gives_model_inputs(tmp_path) -> None:
    write_rating(tmp_path)
    x, y = load_dataset(tmp_path).to_numpy("train")
    assert list(x) == ["user_id", "gender", "item_id", "cate_id", "hist_item_id",
                       "hist_cate_id"]
    assert x["hist_item_id"].shape == (4, 3) and x["hist_item_id"].dtype == np.int64
    assert x["item_id"].dtype == np.int64
    assert y.dtype == np.float32 and y.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_to_numpy_honours_a_sliced_table(tmp_path) -> None:
    write_rating(tmp_path)
    table = load_dataset(tmp_path).read("train").slice(2, 2)
    x, y = to_numpy(table)
    assert x["hist_item_id"].tolist() == [[2, 3, 0], [0, 0, 0]]
    assert x["item_id"].tolist() == [2, 3]
    assert y.tolist() == [1.0, 0.0]


def test_to_numpy_joins_row_groups_and_chunks(tmp_path) -> None:
    write_rating(tmp_path, row_group_size=3)
    table = load_dataset(tmp_path).read("train")
    joined = pa.concat_tables([table.slice(0, 1), table.slice(1, 3)])
    assert joined.column("hist_item_id").num_chunks >= 2
    x, _ = to_numpy(joined)
    assert x["hist_item_id"].tolist() == [[0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 0, 0]]


def test_empty_split_is_written_and_read(tmp_path) -> None:
    samples = build_samples("rating", rating_log(), split=TimeSplit(cutoff=100))
    meta = write_dataset(tmp_path, samples, Vocabularies.fit(samples.fit_values))
    assert meta.counts["test"]["samples"] == 0
    x, y = load_dataset(tmp_path).to_numpy("test")
    assert len(y) == 0 and len(x["item_id"]) == 0
