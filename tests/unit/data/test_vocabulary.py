"""Vocabulary: fit on training ids, reserved ids, min_count, hashing, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dinrec.data.vocabulary import (
    META_KEY,
    OOV_ID,
    PAD_ID,
    Vocabularies,
    Vocabulary,
)
from dinrec.hashing import stable_hash


def test_ids_go_by_descending_count_then_raw_id() -> None:
    vocab = Vocabulary.fit("item_id", np.array(["b", "c", "a", "c", "b", "d"]))
    # b and c twice (b < c), then a and d once (a < d).
    assert vocab.mapping() == {"b": 2, "c": 3, "a": 4, "d": 5}
    assert vocab.size == 6


def test_unseen_id_encodes_to_unknown() -> None:
    vocab = Vocabulary.fit("item_id", np.array(["x", "y"]))
    assert vocab.encode(np.array(["y", "never", "x", ""])).tolist() == [3, OOV_ID, 2, OOV_ID]
    assert vocab.encode(np.array(["y"])).dtype == np.int64


def test_encode_of_empty_input_is_empty_int64() -> None:
    out = Vocabulary.fit("item_id", np.array(["x"])).encode(np.array([], dtype=str))
    assert out.shape == (0,) and out.dtype == np.int64


def test_min_count_maps_rare_ids_to_unknown() -> None:
    raw = np.array(["a", "a", "a", "b", "b", "c"])
    vocab = Vocabulary.fit("item_id", raw, min_count=2)
    assert vocab.mapping() == {"a": 2, "b": 3}
    assert vocab.encode(np.array(["c", "b"])).tolist() == [OOV_ID, 3]
    assert vocab.size == 4


def test_ids_are_compared_as_strings() -> None:
    vocab = Vocabulary.fit("user_id", np.array(["10", "7"]))
    assert vocab.encode(np.array([7, 10, 8])).tolist() == [3, 2, OOV_ID]
    assert vocab.encode(np.array(["7", 10], dtype=object)).tolist() == [3, 2]


def test_decode_inverts_encode_and_names_reserved_ids() -> None:
    vocab = Vocabulary.fit("item_id", np.array(["b", "a", "b"]))
    assert vocab.decode(vocab.encode(np.array(["a", "b"]))).tolist() == ["a", "b"]
    assert vocab.decode(np.array([PAD_ID, OOV_ID])).tolist() == ["<pad>", "<unk>"]
    with pytest.raises(ValueError, match="outside"):
        vocab.decode(np.array([4]))


def test_empty_vocabulary_maps_everything_to_unknown() -> None:
    vocab = Vocabulary.fit("cate_id", np.array([], dtype=str))
    assert vocab.size == 2
    assert vocab.encode(np.array(["a"])).tolist() == [OOV_ID]


def test_fnv1a_hash_matches_reference_values() -> None:
    # Published FNV-1a 64 values: "" is the offset basis.
    assert stable_hash(np.array(["", "a", "abc"])).tolist() == [
        0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0xE71FA2190541574B,
    ]


def test_hash_of_a_string_does_not_depend_on_its_batch() -> None:
    alone = stable_hash(np.array(["ab"]))
    beside_longer = stable_hash(np.array(["ab", "a much longer raw id", "é"]))
    assert alone[0] == beside_longer[0]


def test_hashing_puts_every_id_in_buckets_2_to_n_plus_1() -> None:
    vocab = Vocabulary.fit("item_id", np.array(["a"]), hash_buckets=5)
    ids = vocab.encode(np.array([f"item{i}" for i in range(500)]))
    assert ids.min() >= 2 and ids.max() <= 6
    assert len(np.unique(ids)) == 5
    assert vocab.size == 7
    # Unseen ids hash too: nothing is unknown.
    assert (vocab.encode(np.array(["never seen"])) != OOV_ID).all()
    with pytest.raises(ValueError, match="cannot be decoded"):
        vocab.decode(np.array([2]))


def test_vocab_json_maps_each_feature_to_raw_ids_with_meta_apart(tmp_path) -> None:
    vocabs = Vocabularies.fit(
        {"user_id": np.array(["u1", "u2", "u1"]), "item_id": np.array(["i9"]),
         "cate_id": np.array(["c"])},
        hash_buckets={"cate_id": 3},
    )
    path = tmp_path / "vocab.json"
    vocabs.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == [META_KEY, "user_id", "item_id", "cate_id"]
    assert data["user_id"] == {"u1": 2, "u2": 3}
    assert data["item_id"] == {"i9": 2}
    assert data["cate_id"] == {}
    assert data[META_KEY]["features"]["cate_id"] == {"size": 5, "min_count": 1,
                                                      "hash_buckets": 3}
    assert data[META_KEY]["pad_id"] == 0 and data[META_KEY]["oov_id"] == 1


def test_save_load_round_trip_keeps_encoding(tmp_path) -> None:
    vocabs = Vocabularies.fit(
        {"user_id": np.array(["é", "b"]), "item_id": np.array(["x", "y", "y"])},
        min_count={"item_id": 2}, hash_buckets=None,
    )
    vocabs.save(tmp_path / "vocab.json")
    loaded = Vocabularies.load(tmp_path / "vocab.json")
    assert loaded == vocabs
    assert loaded.sizes() == {"user_id": 4, "item_id": 3}
    assert loaded.encode("item_id", np.array(["x", "y"])).tolist() == [OOV_ID, 2]
    assert loaded["item_id"].min_count == 2


def test_vocab_json_records_its_hash_and_older_files_without_it_still_load(tmp_path) -> None:
    vocabs = Vocabularies.fit({"item_id": np.array(["a", "b"])}, hash_buckets={"item_id": 5})
    data = vocabs.to_json_dict()
    assert data[META_KEY]["id_hash"] == "fnv1a64"
    del data[META_KEY]["id_hash"]  # written before the hash was recorded: the same FNV-1a
    assert Vocabularies.from_json_dict(data).encode("item_id", np.array(["a"])).tolist() == (
        vocabs.encode("item_id", np.array(["a"])).tolist())
    data[META_KEY]["id_hash"] = "murmur3"
    with pytest.raises(ValueError, match="hashes with 'murmur3'"):
        Vocabularies.from_json_dict(data)


def test_load_rejects_a_file_without_meta(tmp_path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"item_id": {"a": 2}}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a dinrec vocabulary"):
        Vocabularies.load(path)


def test_fit_rejects_settings_for_unknown_features() -> None:
    with pytest.raises(ValueError, match="unknown features"):
        Vocabularies.fit({"item_id": np.array(["a"])}, hash_buckets={"itemid": 4})


def test_missing_feature_error_names_it() -> None:
    vocabs = Vocabularies.fit({"item_id": np.array(["a"])})
    with pytest.raises(KeyError, match="cate_id"):
        vocabs["cate_id"]
