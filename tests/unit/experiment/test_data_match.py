"""A dataset built with other protocol options than a model's training data, or than a
config's [data], is named: warned or refused when scoring, refused for `train --data`."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from dinrec.data.build import build_dataset
from dinrec.data.dataset import load_dataset
from dinrec.experiment.config import ConfigError, DataConfig, config_from_dict
from dinrec.experiment.data_match import (
    DatasetMismatchError,
    DatasetMismatchWarning,
    config_differences,
    differences,
)
from dinrec.experiment.data_source import with_dataset
from dinrec.experiment.runner import run_experiment
from dinrec.experiment.scoring import evaluate_bundle

SYNTHETIC = {"n_users": 40, "n_items": 90, "n_categories": 5, "mean_impressions": 20}


def test_differences_name_nested_keys_and_absent_ones() -> None:
    found = differences({"protocol": "rating", "options": {"maxlen": 50, "split": {"f": 0.2}}},
                        {"protocol": "rating", "options": {"maxlen": 20, "split": {"f": 0.2},
                                                           "extra": 1}})
    assert found == ["options.extra: 'absent' expected, the dataset has 1",
                     "options.maxlen: 50 expected, the dataset has 20"]
    assert differences({"a": 1}, {"a": 1, "b": 2}, only_expected=True) == []


@pytest.fixture(scope="module")
def other_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The experiment conftest's tiny dataset, but its test split each user's last 30%."""
    out = tmp_path_factory.mktemp("match") / "split30"
    build_dataset("synthetic", None, "click-log", out, maxlen=12, seed=3,
                  split={"test_fraction": 0.3}, reader_options=SYNTHETIC)
    return out


def test_a_config_that_would_build_the_dataset_has_no_differences(tiny_dataset: Path) -> None:
    meta = load_dataset(tiny_dataset).meta
    same = DataConfig(source="synthetic", protocol="click-log", maxlen=12)
    assert config_differences(same, meta) == []
    other = DataConfig(source="synthetic", protocol="click-log", maxlen=12,
                       split={"test_fraction": 0.3})
    assert config_differences(other, meta) == [
        "options.split.test_fraction: 0.3 expected, the dataset has 0.2"]


def test_with_dataset_refuses_a_dataset_built_otherwise(
    tiny_dataset: Path, other_split: Path, tiny_raw_config: dict
) -> None:
    raw = {**tiny_raw_config, "data": {"source": "synthetic", "protocol": "click-log",
                                       "maxlen": 12}}
    config = config_from_dict(raw)
    assert with_dataset(config, tiny_dataset).data == DataConfig(dataset=str(tiny_dataset))
    with pytest.raises(ConfigError, match=r"split\.test_fraction: 0\.2 expected, the dataset "
                                          r"has 0\.3"):
        with_dataset(config, other_split)


def test_evaluating_on_a_dataset_built_otherwise_warns_or_refuses(
    tmp_path: Path, tiny_raw_config: dict, tiny_dataset: Path, other_split: Path
) -> None:
    run_experiment(config_from_dict(tiny_raw_config), tmp_path / "run", verbose=0)
    bundle = tmp_path / "run" / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training dataset itself: no warning at all
        evaluate_bundle(bundle, tiny_dataset)
    with pytest.warns(DatasetMismatchWarning, match="split.test_fraction: trained with 0.2, "
                                                    "the dataset has 0.3"):
        metrics = evaluate_bundle(bundle, other_split)
    assert 0.0 < metrics["auc"] < 1.0  # a warning, still scored
    with pytest.raises(DatasetMismatchError, match="test_fraction"):
        evaluate_bundle(bundle, other_split, on_mismatch="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate_bundle(bundle, other_split, on_mismatch="ignore") == metrics
