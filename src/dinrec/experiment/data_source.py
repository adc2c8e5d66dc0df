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
from dinrec.experiment.config import ConfigError, DataConfig, ExperimentConfig

DATA_DIR = "data"  # a built dataset's folder inside the run directory


def check_data_config(data: DataConfig) -> None:
    """Everything checkable before reading: which form, names, options and that paths exist."""
    from dinrec.data.build import SOURCES, SYNTHETIC, protocol_option_names, source_option_names

    _check_reading(data)
    if (data.dataset is None) == (data.source is None):
        raise ConfigError("[data] needs exactly one of data.dataset (a dataset directory) and "
                          "data.source (a raw log to build one from)")
    if data.dataset is not None:
        root = Path(data.dataset)
        if not (root / META_FILE).is_file():
            what = "does not exist" if not root.exists() else f"has no {META_FILE}"
            raise ConfigError(f"data.dataset: {root} {what}; build one with `dinrec data build`"
                              " or set data.source")
        return
    assert data.source is not None
    if data.source not in SOURCES:
        raise ConfigError(f"data.source: unknown source {data.source!r}; known: "
                          f"{', '.join(SOURCES)}")
    if data.protocol is None:
        raise ConfigError("data.protocol is required with data.source "
                          "(rating, next-item or click-log)")
    try:
        reader_names = source_option_names(data.source)
        protocol_names = protocol_option_names(data.protocol)
    except ValueError as err:
        raise ConfigError(f"data.protocol: {err}") from None
    for key, names, given in (("reader_options", reader_names, data.reader_options),
                              ("protocol_options", protocol_names, data.protocol_options)):
        for name in given:
            if name not in names:
                raise ConfigError(f"unknown key data.{key}.{name}; valid: "
                                  f"{', '.join(names) or 'none'}")
    if data.source != SYNTHETIC:
        if data.path is None:
            raise ConfigError(f"data.path is required for source {data.source!r}")
        if not Path(data.path).exists():
            raise ConfigError(f"data.path: {data.path} does not exist")
    if data.behaviors_path is not None and not Path(data.behaviors_path).exists():
        raise ConfigError(f"data.behaviors_path: {data.behaviors_path} does not exist")
    if data.maxlen < 1:
        raise ConfigError(f"data.maxlen must be >= 1, got {data.maxlen}")


def _check_reading(data: DataConfig) -> None:
    if data.streaming_threshold_mb < 0:
        raise ConfigError(f"data.streaming_threshold_mb must be >= 0, got "
                          f"{data.streaming_threshold_mb}")
    if data.shuffle_window < 1:
        raise ConfigError(f"data.shuffle_window must be >= 1, got {data.shuffle_window}")


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
