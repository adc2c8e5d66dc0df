"""Split arrays: the per-user validation hold-out."""

from __future__ import annotations

import numpy as np
import pytest

from dinrec.experiment.split_arrays import SplitArrays, validation_split


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
