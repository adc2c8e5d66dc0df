"""Value checks of an ExperimentConfig beyond types; each error names its key."""

from __future__ import annotations

from pathlib import Path

from dinrec.data.dataset import META_FILE
from dinrec.experiment.config.sections import (
    DEVICES,
    EMBEDDINGS,
    MBA_IDS,
    MONITORS,
    SHARDINGS,
    DataConfig,
    ExperimentConfig,
)
from dinrec.experiment.config.typed_tables import ConfigError


def check_config(config: ExperimentConfig) -> None:
    """Value checks beyond types; each error names its key."""
    check_data_config(config.data)
    t = config.training
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(t, key) < 1:
            raise ConfigError(f"training.{key} must be >= 1, got {getattr(t, key)}")
    if t.learning_rate <= 0:
        raise ConfigError(f"training.learning_rate must be > 0, got {t.learning_rate}")
    if not 0.0 <= t.validation_fraction < 1.0:
        raise ConfigError(
            f"training.validation_fraction must be in [0, 1), got {t.validation_fraction}")
    if t.monitor not in MONITORS:
        raise ConfigError(f"training.monitor must be one of {', '.join(MONITORS)}, "
                          f"got {t.monitor!r}")
    if t.patience < 0 or t.num_threads < 0 or t.train_metric_rows < 0:
        raise ConfigError("training.patience, training.num_threads and "
                          "training.train_metric_rows must be >= 0")
    if not 0.0 <= t.ema_momentum < 1.0:
        raise ConfigError(f"training.ema_momentum must be in [0, 1) (0: off), "
                          f"got {t.ema_momentum}")
    _check_optimizer(t.optimizer)
    if t.device not in DEVICES:
        raise ConfigError(f"training.device must be one of {', '.join(DEVICES)}, "
                          f"got {t.device!r}")
    if config.model.embedding_dim < 1:
        raise ConfigError(f"model.embedding_dim must be >= 1, got {config.model.embedding_dim}")
    if config.output.checkpoint_every < 0:
        raise ConfigError("output.checkpoint_every must be >= 0 (0: only at epoch ends)")
    check_distributed(config)


# The optimizers FBGEMM fuses into TorchRec's backward, by training.optimizer.
TORCHREC_OPTIMIZERS = ("sgd", "adagrad", "adam")


def check_distributed(config: ExperimentConfig) -> None:
    """[distributed] values, and the combinations TorchRec-sharded tables cannot take."""
    d = config.distributed
    for key, valid in (("embeddings", EMBEDDINGS), ("sharding", SHARDINGS),
                       ("mba_ids", MBA_IDS)):
        if getattr(d, key) not in valid:
            raise ConfigError(f"distributed.{key} must be one of {', '.join(valid)}, "
                              f"got {getattr(d, key)!r}")
    if d.bucket_cap_mb < 0:
        raise ConfigError(f"distributed.bucket_cap_mb must be >= 0 (0: automatic), got "
                          f"{d.bucket_cap_mb}")
    if d.embeddings != "torchrec":
        if d.sharding != "auto":
            raise ConfigError(f"distributed.sharding = {d.sharding!r} shards TorchRec tables: "
                              "it needs distributed.embeddings = 'torchrec'")
        return
    net = config.model.network
    why = "distributed.embeddings = 'torchrec'"
    if config.model.embedding_dim % 4:
        raise ConfigError(f"{why} needs model.embedding_dim a multiple of 4 (FBGEMM's "
                          f"kernels), got {config.model.embedding_dim}")
    if net.embedding_regularization == "mba" or net.resolved_l2_reg_embedding > 0:
        raise ConfigError(f"{why} takes no embedding regularization (no rank holds a sharded "
                          "table whole): set model.embedding_regularization = 'l2' and "
                          "model.l2_reg_embedding = 0")
    if net.sparse_embeddings:
        raise ConfigError(f"{why} updates the tables in TorchRec's fused backward: "
                          "model.sparse_embeddings does not apply; remove it")
    if config.training.optimizer not in TORCHREC_OPTIMIZERS:
        raise ConfigError(f"{why} fuses the tables' optimizer into the backward (FBGEMM): "
                          f"training.optimizer must be one of {', '.join(TORCHREC_OPTIMIZERS)}"
                          f", got {config.training.optimizer!r}")
    if config.training.optimizer == "adam" and config.training.device == "cpu":
        raise ConfigError(f"{why}: FBGEMM's CPU kernels fuse sgd and adagrad only; set "
                          "training.optimizer = 'adagrad' or 'sgd' (adam needs "
                          "training.device = 'cuda')")


def _check_optimizer(name: str) -> None:
    import torch

    from dinrec.training.optimizers import make_optimizer

    try:
        make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))])
    except ValueError as err:
        raise ConfigError(f"training.optimizer: {err}") from None


def check_data_config(data: DataConfig) -> None:
    """Everything checkable before reading: which form, names, options and that paths exist."""
    from dinrec.data.build_options import (
        SOURCES,
        SYNTHETIC,
        check_history_options,
        protocol_option_names,
        source_option_names,
    )

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
    try:
        check_history_options(data.source, data.history_groups, data.sample_behaviors)
    except ValueError as err:
        key = "data.sample_behaviors" if str(err).startswith("sample_behaviors") \
            else "data.history_groups"
        raise ConfigError(f"{key}: {err}") from None


def _check_reading(data: DataConfig) -> None:
    if data.streaming_threshold_mb < 0:
        raise ConfigError(f"data.streaming_threshold_mb must be >= 0, got "
                          f"{data.streaming_threshold_mb}")
    if data.shuffle_window < 1:
        raise ConfigError(f"data.shuffle_window must be >= 1, got {data.shuffle_window}")
