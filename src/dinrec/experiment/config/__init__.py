"""ExperimentConfig: the frozen, typed description of one training run, read from TOML.

Five sections, each a frozen dataclass; an unknown key, a value of the wrong type or a
missing data path is a ConfigError (a ValueError) whose message names the key:

    [data]      a dataset directory (`dataset`), or a raw log to build one from
                (`source`, `path`, `protocol`, `maxlen`, options), cached in the run dir
    [model]     `embedding_dim`, `use_profile` and every ModelConfig setting but `seed`
    [training]  epochs, batch size, optimizer, learning rate, seed, validation, early stop
    [output]    run directory, name, checkpoint interval, plots
    [distributed]  under torchrun: DDP or TorchRec tables, Dice statistics, MBA ids, buckets

Relative paths (data.dataset, data.path, data.behaviors_path, output.dir) written in a
config FILE are resolved against the directory of that file, so a config works from any
working directory (configs/ml100k-rating.toml's "../../shared/data/ml-100k" is the
checkout's ../shared/data). Paths given on the command line (`--set data.path=...`) are
resolved against the working directory, where the user typed them. Either way they are
stored absolute in the run's resolved config.toml.

Example:
    >>> cfg = config_from_dict({"data": {"source": "synthetic", "protocol": "click-log"},
    ...                         "training": {"epochs": 1}})
    >>> cfg.training.epochs, cfg.model.network.model
    (1, 'DIN')
"""

from dinrec.experiment.config.checks import check_config, check_data_config
from dinrec.experiment.config.parse import (
    anchor_paths,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
    read_toml,
)
from dinrec.experiment.config.sections import (
    DEVICES,
    MONITORS,
    SECTIONS,
    DataConfig,
    DistributedConfig,
    ExperimentConfig,
    ModelSection,
    OutputConfig,
    TrainingConfig,
)
from dinrec.experiment.config.typed_tables import ConfigError

__all__ = ["DEVICES", "MONITORS", "SECTIONS", "ConfigError", "DataConfig", "DistributedConfig",
           "ExperimentConfig", "ModelSection", "OutputConfig", "TrainingConfig", "anchor_paths",
           "apply_overrides", "check_config", "check_data_config", "config_from_dict",
           "dump_config", "load_config", "parse_override", "read_toml"]
