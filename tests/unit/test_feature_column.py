from __future__ import annotations

import pytest

from dinrec.feature_column import (
    DenseFeat,
    SparseFeat,
    VarLenSparseFeat,
    columns_from_dicts,
    columns_to_dicts,
    get_feature_names,
)


def test_get_feature_names_follows_deepctr_order(seed_data):
    _, _, cols, _ = seed_data
    assert get_feature_names(cols) == [
        "user",
        "gender",
        "item_id",
        "cate_id",
        "pay_score",
        "hist_item_id",
        "seq_length",
        "hist_cate_id",
    ]


def test_weight_then_length_follow_their_sequence():
    col = VarLenSparseFeat(SparseFeat("genres", 10), 3, weight_name="w", length_name="n")
    assert get_feature_names([DenseFeat("d"), col, SparseFeat("a", 2)]) == [
        "d",
        "genres",
        "w",
        "n",
        "a",
    ]


def test_auto_dim_is_six_times_fourth_root():
    assert SparseFeat("x", 10000, embedding_dim="auto").embedding_dim == 6 * 10
    assert SparseFeat("x", 80, embedding_dim="auto").embedding_dim == 6 * 2


def test_varlen_forwards_inner_attributes():
    inner = SparseFeat("hist_item_id", 7, embedding_dim=5, embedding_name="item_id")
    col = VarLenSparseFeat(inner, maxlen=9)
    assert (col.name, col.vocabulary_size, col.embedding_dim, col.embedding_name) == (
        "hist_item_id",
        7,
        5,
        "item_id",
    )
    assert col.combiner == "mean"


def test_embedding_name_defaults_to_name():
    assert SparseFeat("item_id", 3).embedding_name == "item_id"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a", "vocabulary_size": 0}, "vocabulary_size must be >= 1"),
        ({"name": "a", "vocabulary_size": 3, "embedding_dim": 0}, "embedding_dim"),
        ({"name": "", "vocabulary_size": 3}, "non-empty"),
    ],
)
def test_bad_sparse_columns_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SparseFeat(**kwargs)


def test_bad_combiner_names_feature():
    with pytest.raises(ValueError, match=r"'genres'.*combiner"):
        VarLenSparseFeat(SparseFeat("genres", 3), 4, combiner="avg")


def test_columns_round_trip_through_dicts(seed_data):
    _, _, cols, _ = seed_data
    assert columns_from_dicts(columns_to_dicts(cols)) == cols


def test_transform_fn_cannot_be_saved():
    with pytest.raises(ValueError, match=r"'price'.*transform_fn"):
        columns_to_dicts([DenseFeat("price", transform_fn=lambda v: v)])
