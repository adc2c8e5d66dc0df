"""Split arrays: per-user validation hold-out and id remapping between vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from dinrec.data.vocabulary import Vocabularies, Vocabulary
from dinrec.experiment.tensors import SplitArrays, remap_ids, validation_split


def test_validation_holds_out_each_users_latest_samples() -> None:
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
    arrays = SplitArrays({"item_id": np.arange(11)}, np.zeros(11, np.float32), groups)
    train, val = validation_split(arrays, 0.2)
    assert train.x["item_id"].tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    assert val.x["item_id"].tolist() == [4, 9, 10]  # a one-sample user is validation-only
    assert val.groups.tolist() == [0, 1, 2]


def test_a_split_that_leaves_no_training_rows_is_named() -> None:
    arrays = SplitArrays({"a": np.arange(2)}, np.zeros(2, np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"validation_fraction=0\.1 leaves only validation rows"):
        validation_split(arrays, 0.1)


def vocabs(items: dict[str, int]) -> Vocabularies:
    return Vocabularies({"item_id": Vocabulary("item_id", items),
                         "user_id": Vocabulary("user_id", {"u": 2})})


def test_ids_move_through_raw_ids_padding_and_unknown_kept() -> None:
    source = vocabs({"a": 2, "b": 3, "c": 4})
    target = vocabs({"c": 2, "a": 3})  # "b" is unknown to the target
    x = {"item_id": np.array([2, 3, 4, 1]), "hist_item_id": np.array([[4, 2, 0], [3, 0, 0]]),
         "user_id": np.array([2, 2, 2, 2])}
    out = remap_ids(x, source, target)
    assert out["item_id"].tolist() == [3, 1, 2, 1]
    assert out["hist_item_id"].tolist() == [[2, 3, 0], [1, 0, 0]]
    assert out["user_id"] is x["user_id"]  # equal vocabularies: untouched


def test_equal_vocabularies_change_nothing() -> None:
    x = {"item_id": np.array([2, 3])}
    assert remap_ids(x, vocabs({"a": 2, "b": 3}), vocabs({"a": 2, "b": 3}))["item_id"] is \
        x["item_id"]
