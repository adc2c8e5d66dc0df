from __future__ import annotations

import numpy as np
import pytest
import torch

from dinrec.inputs import prepare_inputs, prepare_labels
from dinrec.schema import FeatureSchema


def schema_of(seed_data) -> FeatureSchema:
    _, _, cols, hist = seed_data
    return FeatureSchema.resolve(cols, hist)


def test_ids_stay_int64_and_dense_float32(seed_data):
    x = seed_data[0]
    out = prepare_inputs(schema_of(seed_data), x)
    assert out["item_id"].dtype == torch.int64
    assert out["hist_item_id"].shape == (3, 4)
    assert out["seq_length"].tolist() == [3, 3, 2]
    assert out["pay_score"].dtype == torch.float32


def test_ids_above_float32_precision_stay_exact():
    from dinrec.feature_column import SparseFeat

    big = 2**40 + 1
    schema = FeatureSchema.resolve([SparseFeat("ad", big + 1)], [])
    out = prepare_inputs(schema, {"ad": np.array([big, 3], dtype=np.int64)})
    assert out["ad"].tolist() == [big, 3]


def test_pandas_series_and_lists_are_accepted(seed_data):
    pd = pytest.importorskip("pandas")
    x = dict(seed_data[0])
    x["user"] = pd.Series([0, 1, 2])
    x["hist_item_id"] = [[1, 2, 3, 0], [3, 2, 1, 0], [1, 2, 0, 0]]
    out = prepare_inputs(schema_of(seed_data), x)
    assert out["user"].tolist() == [0, 1, 2]
    assert out["hist_item_id"][1].tolist() == [3, 2, 1, 0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: x.pop("gender"), r"missing input 'gender' \(SparseFeat\)"),
        (lambda x: x.pop("seq_length"), "missing input 'seq_length'"),
        (lambda x: x.update(item_id=np.array([1, 2, 4])), r"'item_id'.*id 4 is outside.*\[0, 4\)"),
        (lambda x: x.update(user=np.array([-1, 1, 2])), r"'user'.*id -1"),
        (lambda x: x.update(hist_item_id=np.zeros((3, 5), int)), r"'hist_item_id'.*\(3, 4\)"),
        (lambda x: x.update(pay_score=np.array([0.1, np.nan, 0.3])), "'pay_score'.*NaN"),
        (lambda x: x.update(pay_score=np.array([0.1, np.inf, 0.3])), "'pay_score'.*inf"),
        (lambda x: x.update(cate_id=np.array([1, 2])), "'cate_id': has 2 rows"),
        (lambda x: x.update(item_id=np.array([1.5, 2, 3])), "'item_id'.*integers"),
        (lambda x: x.update(item_id=np.array(["a", "b", "c"])), "'item_id'.*Vocabulary"),
        (lambda x: x.update(seq_length=np.array([3, 5, 2])), r"'seq_length'.*\[0, 4\]"),
    ],
)
def test_bad_inputs_name_the_feature(seed_data, change, message):
    x = dict(seed_data[0])
    change(x)
    with pytest.raises(ValueError, match=message):
        prepare_inputs(schema_of(seed_data), x)


def test_labels_outside_zero_one_are_rejected():
    with pytest.raises(ValueError, match="row 1 has 2"):
        prepare_labels(np.array([0, 2, 1]), 3)


def test_label_count_must_match_rows():
    with pytest.raises(ValueError, match="labels have 2 rows but the inputs have 3"):
        prepare_labels([0, 1], 3)
