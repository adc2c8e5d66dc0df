"""The [data] section made real: a dataset directory, given or built from a raw log once.

A config either names a dataset directory (`data.dataset`) or a raw source to build one
from; a built dataset is cached in the run directory (`<run>/data`), so a resumed run reads
the same samples instead of building them again. `with_dataset` points a config at a
dataset built beforehand (`dinrec train CONFIG --data DIR`), refusing one its [data] would
not have built.

Example:
    >>> ds = prepare_dataset(DataConfig(source="synthetic", protocol="click-log",
    ...                                 reader_options={"n_users": 50}), "runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dinrec.data.dataset import META_FILE, Dataset, load_dataset
from dinrec.experiment.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    check_data_config,
)

DATA_DIR = "data"  # a built dataset's folder inside the run directory


def prepare_dataset(
    data: DataConfig, run_dir: str | os.PathLike[str], progress: bool = False
) -> Dataset:
    """The dataset a run trains on: data.dataset, or <run_dir>/data built once from the log."""
    if data.dataset is not None:
        return load_dataset(data.dataset)
    from dinrec.data.build import build_dataset

    target = Path(run_dir) / DATA_DIR
    if not (target / META_FILE).is_file():
        assert data.source is not None and data.protocol is not None
        build_dataset(
            data.source, data.path, data.protocol, target,
            behaviors_path=data.behaviors_path, maxlen=data.maxlen, seed=data.seed,
            min_count=data.min_count, hash_buckets=data.hash_buckets or None, split=data.split,
            reader_options=data.reader_options, protocol_options=data.protocol_options,
            on_error=data.on_error, overwrite=target.exists(), progress=progress,
            history_groups=data.history_groups or None, sample_behaviors=data.sample_behaviors,
            history_time_gap=data.history_time_gap,
        )
    return load_dataset(target)


def with_dataset(config: ExperimentConfig, dataset_dir: str | os.PathLike[str]) -> ExperimentConfig:
    """The config training on an already built dataset directory instead of its [data].

    A [data] section that builds from a raw log says how the samples are made (protocol,
    maxlen, split, protocol options); a dataset built otherwise is refused, each difference
    named, since the run would not be the configured experiment.
    """
    from dinrec.experiment.data_match import config_differences

    root = Path(dataset_dir).expanduser().resolve()
    check_data_config(DataConfig(dataset=str(root)))
    if config.data.source is not None:
        found = config_differences(config.data, load_dataset(root).meta)
        if found:
            raise ConfigError(
                f"dataset {root} was not built as [data] says ({'; '.join(found)}); rebuild "
                "it with the config's options, or leave it out to build from data.path")
    # How the samples are read (streaming) is the run's choice, whatever built them.
    return config.replace(data=dataclasses.replace(config.data.reading(), dataset=str(root)))
