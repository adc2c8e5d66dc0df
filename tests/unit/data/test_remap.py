"""Id remapping between vocabularies, through the raw ids."""

from __future__ import annotations

import numpy as np

from dinrec.data.remap import remap_ids
from dinrec.data.vocabulary import Vocabularies, Vocabulary


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
