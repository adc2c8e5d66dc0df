"""Streamed splits (experiment/streaming.py): the same rows as the in-memory path, the same
evaluation, the automatic choice, and a streamed run end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dinrec.data.dataset import Dataset, load_dataset
from dinrec.experiment.config import ConfigError, DataConfig, config_from_dict
from dinrec.experiment.runner import (
    build_experiment_model,
    evaluate_arrays,
    evaluate_source,
    in_memory_train,
    run_experiment,
)
from dinrec.experiment.split_arrays import read_split
from dinrec.experiment.streaming import split_loader, streamed_train, use_streaming


def rows_of(source) -> tuple[np.ndarray, np.ndarray]:
    """(user_key, labels) of every row a source yields, sorted by (user, label, item)."""
    keys, labels, items = [], [], []
    for feats, y in source:
        keys.append(feats["user_key"].numpy())
        items.append(feats["item_id"].numpy())
        labels.append(y.numpy())
    k, y_, i = (np.concatenate(v) for v in (keys, labels, items))
    order = np.lexsort((i, y_, k))
    return k[order], y_[order]


@pytest.fixture
def setup(tiny_dataset: Path, tiny_raw_config: dict) -> tuple[Any, Dataset, Any]:
    """(config, dataset, model) of the tiny experiment."""
    config = config_from_dict(tiny_raw_config)
    dataset = load_dataset(tiny_dataset)
    return config, dataset, build_experiment_model(config, dataset)


def test_streamed_train_and_validation_hold_the_in_memory_rows(setup) -> None:
    config, dataset, model = setup
    mem_train, mem_val = in_memory_train(model.schema, dataset, config.training)
    s_train, s_val = streamed_train(model.schema, dataset, config.data, config.training)
    assert mem_val is not None and s_val is not None
    for mem, streamed in ((mem_train, s_train), (mem_val, s_val)):
        for a, b in zip(rows_of(mem), rows_of(streamed), strict=True):
            np.testing.assert_array_equal(a, b)
    assert s_train.num_rows + s_val.num_rows == dataset.meta.counts["train"]["samples"]


def test_streamed_test_metrics_equal_the_in_memory_ones(setup) -> None:
    _, dataset, model = setup
    in_memory = evaluate_arrays(model, read_split(dataset, "test"), 50)
    streamed = evaluate_source(model, split_loader(model.schema, dataset, "test", 50))
    assert streamed == pytest.approx(in_memory, abs=1e-6)


def test_streaming_is_automatic_above_the_threshold(setup) -> None:
    _, dataset, model = setup
    schema = model.schema
    chosen, why = use_streaming(DataConfig(streaming_threshold_mb=0), schema, dataset)
    assert chosen and "above data.streaming_threshold_mb = 0" in why
    chosen, why = use_streaming(DataConfig(), schema, dataset)
    assert not chosen and why.startswith("automatic") and "within" in why
    assert use_streaming(DataConfig(streaming=True, streaming_threshold_mb=1e9), schema,
                         dataset) == (True, "data.streaming = true")


def test_a_negative_threshold_and_an_empty_window_are_named(tiny_raw_config: dict) -> None:
    tiny_raw_config["data"]["shuffle_window"] = 0
    with pytest.raises(ConfigError, match=r"data\.shuffle_window must be >= 1"):
        config_from_dict(tiny_raw_config)
    tiny_raw_config["data"]["shuffle_window"] = 10
    tiny_raw_config["data"]["streaming_threshold_mb"] = -1
    with pytest.raises(ConfigError, match=r"data\.streaming_threshold_mb must be >= 0"):
        config_from_dict(tiny_raw_config)


def test_a_streamed_run_trains_close_to_the_in_memory_run(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    tiny_raw_config["training"]["epochs"] = 2
    memory = run_experiment(config_from_dict(tiny_raw_config), tmp_path / "mem", verbose=0)
    tiny_raw_config["data"]["streaming"] = True
    tiny_raw_config["data"]["shuffle_window"] = 128
    streamed = run_experiment(config_from_dict(tiny_raw_config), tmp_path / "stream", verbose=0)
    assert "samples streamed from Parquet (data.streaming = true)" in (
        tmp_path / "stream" / "train.log").read_text()
    # Another (valid) shuffle order: the same model up to the order's noise on tiny data.
    assert streamed.test["auc"] == pytest.approx(memory.test["auc"], abs=0.05)
    assert streamed.test["logloss"] == pytest.approx(memory.test["logloss"], abs=0.05)
