"""Every argument of SparseFeat / VarLenSparseFeat / DenseFeat does what DeepCTR's does
(mirroring DeepCTR's tests/feature_test.py and the columns of its tests/utils.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dinrec.feature_column import (
    DEFAULT_GROUP_NAME,
    DenseFeat,
    SparseFeat,
    VarLenSparseFeat,
    get_feature_names,
)
from dinrec.inputs import prepare_inputs
from dinrec.models import DIN


def features_of(cols: list, x: dict, tables: dict[str, list[list[float]]]) -> torch.Tensor:
    """The MLP input [B, D] of a history-less DIN whose tables hold the given rows."""
    model = DIN(cols, [], dnn_hidden_units=(2,))
    with torch.no_grad():
        for name, rows in tables.items():
            model.embeddings.table(name).weight.copy_(torch.tensor(rows))
    return model.features(prepare_inputs(model.schema, x)).detach()


ROWS = [[0.0, 0.0], [1.0, 10.0], [2.0, 20.0], [4.0, 40.0]]  # row i of a 4 x 2 table


def test_defaults_are_deepctr_s():
    sparse = SparseFeat("a", 5)
    assert (sparse.embedding_dim, sparse.use_hash, sparse.vocabulary_path, sparse.dtype,
            sparse.embedding_name, sparse.group_name, sparse.trainable) == (
        4, False, None, "int32", "a", DEFAULT_GROUP_NAME, True)
    assert DEFAULT_GROUP_NAME == "default_group"
    varlen = VarLenSparseFeat(sparse, 3)
    assert (varlen.combiner, varlen.length_name, varlen.weight_name, varlen.weight_norm) == (
        "mean", None, None, True)
    dense = DenseFeat("d")
    assert (dense.dimension, dense.dtype, dense.transform_fn) == (1, "float32", None)


def test_argument_names_and_order_are_deepctr_s():
    names = [f.name for f in dataclasses.fields(SparseFeat)]
    assert names == ["name", "vocabulary_size", "embedding_dim", "use_hash", "vocabulary_path",
                     "dtype", "embeddings_initializer", "embedding_name", "group_name",
                     "trainable"]
    assert [f.name for f in dataclasses.fields(VarLenSparseFeat)] == [
        "sparsefeat", "maxlen", "combiner", "length_name", "weight_name", "weight_norm"]
    assert [f.name for f in dataclasses.fields(DenseFeat)] == [
        "name", "dimension", "dtype", "transform_fn"]
    # Positional use, as DeepCTR's tests write it: SparseFeat(name, vocab, dim, use_hash).
    assert SparseFeat("a", 9, 6, True).use_hash and SparseFeat("a", 9, 6).embedding_dim == 6


def test_vocabulary_path_is_forwarded_by_a_varlen_column():
    # DeepCTR's test_feature_column_sparsefeat_vocabulary_path.
    sf = SparseFeat("user_id", 4, vocabulary_path="./dummy_test.csv")
    assert sf.vocabulary_path == "./dummy_test.csv"
    assert VarLenSparseFeat(sf, 6).vocabulary_path == "./dummy_test.csv"


def test_get_feature_names_lists_each_input_once_in_declared_order():
    cols = [
        VarLenSparseFeat(SparseFeat("weighted_seq", 2), 3, length_name="weighted_seq_seq_length",
                         weight_name="weight"),
        SparseFeat("sparse_feature_0", 4),
        DenseFeat("dense_feature_0"),
        VarLenSparseFeat(SparseFeat("sequence_sum", 4), 2, combiner="sum", length_name="len"),
        VarLenSparseFeat(SparseFeat("sequence_max", 4), 2, combiner="max", length_name="len"),
    ]
    assert get_feature_names(cols) == [
        "weighted_seq", "weight", "weighted_seq_seq_length", "sparse_feature_0",
        "dense_feature_0", "sequence_sum", "len", "sequence_max"]


@pytest.mark.parametrize(("combiner", "expected"), [
    ("sum", [[3.0, 30.0], [4.0, 40.0]]),
    ("mean", [[1.5, 15.0], [4.0, 40.0]]),
    ("max", [[2.0, 20.0], [4.0, 40.0]]),
])
def test_combiner_pools_the_non_padded_ids(combiner, expected):
    cols = [VarLenSparseFeat(SparseFeat("genres", 4, embedding_dim=2), 3, combiner=combiner)]
    x = {"genres": np.array([[1, 2, 0], [3, 0, 0]])}
    assert features_of(cols, x, {"genres": ROWS}).tolist() == expected


def test_length_name_masks_by_length_instead_of_id_zero():
    cols = [VarLenSparseFeat(SparseFeat("genres", 4, embedding_dim=2), 3, combiner="sum",
                             length_name="genres_len")]
    # Row 0 counts 1 id of 3 (ids past the length are ignored, even non-zero ones); row 1
    # counts its padding 0 too, as a length mask does.
    x = {"genres": np.array([[1, 2, 3], [3, 0, 0]]), "genres_len": np.array([1, 2])}
    assert features_of(cols, x, {"genres": ROWS}).tolist() == [[1.0, 10.0], [4.0, 40.0]]


@pytest.mark.parametrize(("weight_norm", "expected"), [
    (False, [[1.0 * 1 + 0.5 * 2, 10.0 * 1 + 0.5 * 20]]),
    # Softmax of (1, 0.5) over the valid slots.
    (True, [[float(np.dot(np.exp([1, 0.5]) / np.exp([1, 0.5]).sum(), [1, 2])),
             float(np.dot(np.exp([1, 0.5]) / np.exp([1, 0.5]).sum(), [10, 20]))]]),
])
def test_weight_name_scales_each_id_and_weight_norm_softmaxes(weight_norm, expected):
    cols = [VarLenSparseFeat(SparseFeat("genres", 4, embedding_dim=2), 3, combiner="sum",
                             weight_name="genres_w", weight_norm=weight_norm)]
    # DeepCTR feeds weights as [B, T, 1]; the padded slot's weight 9 counts for nothing.
    x = {"genres": np.array([[1, 2, 0]]), "genres_w": np.array([[[1.0], [0.5], [9.0]]])}
    got = features_of(cols, x, {"genres": ROWS})
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_embedding_name_makes_two_columns_read_one_table():
    cols = [SparseFeat("item_id", 4, embedding_dim=2),
            SparseFeat("last_item", 4, embedding_dim=2, embedding_name="item_id")]
    got = features_of(cols, {"item_id": np.array([1]), "last_item": np.array([3])},
                      {"item_id": ROWS})
    assert got.tolist() == [[1.0, 10.0, 4.0, 40.0]]


def test_dense_dimension_above_one_takes_rows_of_that_width():
    cols = [DenseFeat("pic_vec", 5), SparseFeat("user_id", 4, embedding_dim=2)]
    # DeepCTR's test_long_dense_vector: [[1], [0], [1]]-shaped ids and a [3, 5] dense input.
    x = {"user_id": np.array([[1], [0], [1]]),
         "pic_vec": np.array([[0.1, 0.5, 0.4, 0.3, 0.2]] * 3)}
    got = features_of(cols, x, {"user_id": ROWS})
    np.testing.assert_allclose(got[:, 2:].numpy(), x["pic_vec"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"'pic_vec': expected shape \(3, 5\)"):
        features_of(cols, {**x, "pic_vec": np.zeros((3, 4))}, {})


def test_transform_fn_is_applied_inside_the_model_and_refused_by_save(tmp_path):
    cols = [DenseFeat("price", transform_fn=lambda v: (v - 3.0) / 4.0)]
    got = features_of(cols, {"price": np.array([3.0, 7.0])}, {})
    assert got.tolist() == [[0.0], [1.0]]
    model = DIN(cols, [])
    with pytest.raises(ValueError, match=r"DenseFeat 'price' has a transform_fn"):
        model.save(tmp_path / "bundle")


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "string"])
def test_dtype_is_declared_only_and_ids_are_carried_as_int64(dtype):
    col = SparseFeat("item_id", 4, dtype=dtype)
    schema = DIN([col], []).schema
    values = np.array([1.0, 3.0]) if dtype == "float32" else np.array([1, 3])
    feats = prepare_inputs(schema, {"item_id": values})
    assert feats["item_id"].dtype == torch.int64 and feats["item_id"].tolist() == [1, 3]


def test_use_hash_takes_raw_strings_on_a_pooled_sequence():
    cols = [VarLenSparseFeat(SparseFeat("tags", 50, use_hash=True), 2, combiner="sum")]
    model = DIN(cols, [])
    feats = prepare_inputs(model.schema, {"tags": np.array([["red", "0"], ["red", "blue"]])})
    ids = feats["tags"]
    assert ids[0, 1] == 0 and ids[0, 0] == ids[1, 0] and 1 <= int(ids[1, 1]) < 50


def test_group_name_is_kept_and_changes_nothing():
    x = {"a": np.array([1, 2]), "b": np.array([0, 3])}
    probs = []
    for group in ("g1", "g2"):
        cols = [SparseFeat("a", 4, group_name=group), SparseFeat("b", 4, group_name="other")]
        assert cols[0].group_name == group
        probs.append(DIN(cols, [], init_std=0.5).predict(x))
    np.testing.assert_array_equal(probs[0], probs[1])


def test_trainable_false_freezes_the_table():
    cols = [SparseFeat("a", 4, embedding_dim=2, trainable=False), DenseFeat("d")]
    model = DIN(cols, [], dnn_hidden_units=(2,))
    before = model.embeddings.table("a").weight.detach().clone()
    model.compile("adam", lr=0.1)
    model.fit({"a": np.array([1, 2, 3, 1]), "d": np.array([0.0, 1.0, 2.0, 3.0])},
              np.array([1, 0, 1, 0]), epochs=1, verbose=0)
    assert torch.equal(model.embeddings.table("a").weight, before)


def test_embeddings_initializer_fills_the_table():
    col = SparseFeat("a", 3, embedding_dim=2, embeddings_initializer=torch.nn.init.ones_)
    assert torch.equal(DIN([col], []).embeddings.table("a").weight, torch.ones(3, 2))
