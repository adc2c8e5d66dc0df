"""Columns sharing a table: DeepCTR's rules for rows, dim, trainable, initializer and hashing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import dinrec
from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.hashing import hash_into_rows, legacy_blake2b_ids
from dinrec.inputs import prepare_inputs
from dinrec.models import DIN
from dinrec.models.config import ModelConfig
from dinrec.models.din import build_model
from dinrec.schema import FeatureSchema
from dinrec.serving.encoding import FeatureEncoder


def hashed_columns(item_rows: int = 7, hist_rows: int = 11) -> list:
    return [
        SparseFeat("item_id", item_rows, embedding_dim=4, use_hash=True),
        VarLenSparseFeat(SparseFeat("hist_item_id", hist_rows, embedding_dim=4, use_hash=True,
                                    embedding_name="item_id"), maxlen=3),
    ]


def resolve(cols: list, hist: list[str]) -> FeatureSchema:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FeatureSchema.resolve(cols, hist)


def test_a_hashed_raw_id_reaches_one_row_as_candidate_and_in_the_history():
    schema = resolve(hashed_columns(), ["item_id"])
    x = {"item_id": np.array(["abc", "xyz"]),
         "hist_item_id": np.array([["abc", "xyz", "0"], ["xyz", "abc", "abc"]])}
    feats = prepare_inputs(schema, x)
    # Both hash into the table's 11 rows, not into 7 and 11: the same raw id, one row.
    abc, xyz = hash_into_rows(np.array(["abc", "xyz"]), 11).tolist()
    assert feats["item_id"].tolist() == [abc, xyz]
    assert feats["hist_item_id"].tolist() == [[abc, xyz, 0], [xyz, abc, abc]]
    assert (abc, xyz) != (0, 0) and abc != xyz


def test_attention_matches_a_hashed_candidate_in_its_history():
    with pytest.warns(UserWarning, match="different vocabulary_size"):
        model = DIN(hashed_columns(), ["item_id"], att_activation="prelu", init_std=0.5)
    inputs = prepare_inputs(model.schema, {"item_id": np.array(["abc"]),
                                           "hist_item_id": np.array([["abc", "0", "0"]])})
    keys = model.keys(inputs)[0, 0]  # [E]
    assert torch.equal(keys, model.query(inputs)[0])


def test_serving_hashes_raw_ids_as_training_does():
    schema = resolve(hashed_columns(), ["item_id"])
    encoder = FeatureEncoder(schema, None)
    raw = ["abc", "17", "0"]
    for name in ("item_id", "hist_item_id"):
        served = encoder.codecs[name].encode(raw, name)
        assert served.tolist() == hash_into_rows(np.array(raw), 11).tolist()
    assert served[-1] == 0  # padding stays padding


def test_the_hash_is_fnv1a_into_rows_minus_padding():
    # FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; 11 rows: 1 + hash % 10.
    assert hash_into_rows(np.array(["a", 0, "0.0", ""], dtype=object), 11).tolist() == [
        1 + 0xAF63DC4C8601EC8C % 10, 0, 0, 0
    ]
    ints = hash_into_rows(np.array([[5, 0]]), 11)
    assert ints.shape == (1, 2) and ints[0, 0] == hash_into_rows(np.array(["5"]), 11)[0]


def test_a_schema_saved_before_the_hash_was_recorded_keeps_its_blake2b_ids():
    schema = resolve(hashed_columns(), ["item_id"])
    old = {k: v for k, v in schema.to_dict().items() if k != "id_hash"}
    legacy = FeatureSchema.from_dict(old)
    feats = prepare_inputs(legacy, {"item_id": np.array(["abc"]),
                                    "hist_item_id": np.array([["abc", "0", "0"]])})
    # The old behaviour, bug included: each column hashed into its own vocabulary_size.
    assert feats["item_id"].tolist() == legacy_blake2b_ids(np.array(["abc"]), 7).tolist()
    assert feats["hist_item_id"][0, 0] == legacy_blake2b_ids(np.array(["abc"]), 11)[0]


def test_columns_of_one_table_must_agree_on_hashing():
    cols = hashed_columns()
    cols[0] = SparseFeat("item_id", 7, embedding_dim=4, use_hash=False)
    with pytest.raises(ValueError, match="table 'item_id' disagree on use_hash"):
        FeatureSchema.resolve(cols, ["item_id"])


def test_vocabulary_path_maps_raw_values_through_deepctr_s_file(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_text("1,emerson\n2,lake\n3,palmer\n", encoding="utf-8")
    col = SparseFeat("band", 4, use_hash=True, vocabulary_path=str(path))
    schema = FeatureSchema.resolve([col], [])
    feats = prepare_inputs(schema, {"band": np.array(["lake", "palmer", "lakeemerson"])})
    assert feats["band"].tolist() == [2, 3, 0]  # unknown values: DeepCTR's default 0


def test_vocabulary_path_without_use_hash_warns_that_it_is_ignored(tmp_path):
    col = SparseFeat("band", 4, vocabulary_path=str(tmp_path / "v.csv"))
    with pytest.warns(UserWarning, match="'band': vocabulary_path is only read with use_hash"):
        FeatureSchema.resolve([col], [])


def test_a_bad_vocabulary_file_names_its_line(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_text("1,emerson\nlake\n", encoding="utf-8")
    schema = FeatureSchema.resolve([SparseFeat("band", 4, use_hash=True,
                                               vocabulary_path=str(path))], [])
    with pytest.raises(ValueError, match="line 2: expected 'id,raw_value'"):
        prepare_inputs(schema, {"band": np.array(["lake"])})


def test_trainable_and_initializer_come_from_the_last_column_as_in_deepctr():
    def ones(weight: torch.Tensor) -> None:
        weight.fill_(1.0)

    cols = [
        VarLenSparseFeat(SparseFeat("hist_item_id", 5, embedding_dim=2, embedding_name="item_id",
                                    trainable=False, embeddings_initializer=ones), maxlen=2),
        SparseFeat("item_id", 5, embedding_dim=2, trainable=True),
    ]
    with pytest.warns(UserWarning, match="trainable False of 'hist_item_id'"):
        model = DIN(cols, ["item_id"])
    weight = model.embeddings.table("item_id").weight
    assert not weight.requires_grad and torch.equal(weight, torch.ones(5, 2))


def test_a_bundle_saved_before_the_rules_were_recorded_loads_as_it_was_trained(tmp_path):
    cols = [SparseFeat("cate_id", 3, embedding_dim=4),
            VarLenSparseFeat(SparseFeat("hist_cate_id", 3, embedding_dim=2,
                                        embedding_name="cate_id"), maxlen=2)]
    # The model an older dinrec built: the first declared dim (4), blake2b hashing.
    old = FeatureSchema.resolve(cols, ["cate_id"], id_hash="blake2b-column",
                                table_rule="first-declared")
    model = build_model(old, ModelConfig(dnn_hidden_units=(2,), att_hidden_size=(2,)))
    model.save(tmp_path / "old")
    schema_file = tmp_path / "old" / "schema.json"
    data = json.loads(schema_file.read_text())
    schema_file.write_text(json.dumps({k: data[k] for k in ("columns", "history_feature_list")}))
    loaded = dinrec.load_model(tmp_path / "old")
    assert loaded.schema.tables["cate_id"].dim == 4
    x = {"cate_id": np.array([1, 2]), "hist_cate_id": np.array([[1, 0], [2, 1]])}
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_vocabulary_file_id_beyond_the_table_is_refused(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_text("1,emerson\n9,lake\n", encoding="utf-8")
    schema = FeatureSchema.resolve([SparseFeat("band", 4, use_hash=True,
                                               vocabulary_path=str(path))], [])
    assert prepare_inputs(schema, {"band": np.array(["emerson"])})["band"].tolist() == [1]
    with pytest.raises(ValueError, match=r"'band': vocabulary_path .* id 9, outside"):
        prepare_inputs(schema, {"band": np.array(["lake"])})
