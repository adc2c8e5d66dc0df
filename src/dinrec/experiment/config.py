"""ExperimentConfig: the frozen, typed description of one training run, read from TOML.

Four sections, each a frozen dataclass; an unknown key, a value of the wrong type or a
missing data path is a ConfigError (a ValueError) whose message names the key:

    [data]      a dataset directory (`dataset`), or a raw log to build one from
                (`source`, `path`, `protocol`, `maxlen`, options), cached in the run dir
    [model]     `embedding_dim`, `use_profile` and every ModelConfig setting but `seed`
    [training]  epochs, batch size, optimizer, learning rate, seed, validation, early stop
    [output]    run directory, name, checkpoint interval, plots

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

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dinrec.experiment.typed_tables import ConfigError, section_kwargs
from dinrec.models.config import ModelConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package (tomllib's origin)
    import tomli as tomllib

SECTIONS = ("data", "model", "training", "output")
MONITORS = ("val_gauc", "val_auc", "val_loss", "val_logloss")
# ModelConfig settings the [model] section does not take: the one seed lives in [training].
_MODEL_OWNED = ("seed",)


@dataclass(frozen=True)
class DataConfig:
    """[data]: where the samples come from.

    Args:
        dataset: a dataset directory (train/test.parquet, dataset.json, vocab.json).
        source: instead of `dataset`: a raw log source ("movielens", "amazon", "taobao",
            "table", "recbole", ... or "synthetic"), built with dinrec.data.build.
        path: the raw log file or directory of `source`.
        protocol: "rating", "next-item" or "click-log".
        behaviors_path: click-log: a separate behavior log.
        maxlen, seed, min_count, split, hash_buckets, on_error: as build_dataset's.
        reader_options: the reader's options (generate_log's for "synthetic").
        protocol_options: the protocol's options (threshold, history, negatives, ...).
        streaming: read the splits from Parquet in row groups, in bounded memory, instead
            of loading them; absent: stream when the train split would take more than
            `streaming_threshold_mb` in memory (the run's log says which was chosen).
        streaming_threshold_mb: the automatic choice's limit, in MiB of decoded samples.
        shuffle_window: streaming: rows shuffled together (a window spanning row groups,
            whose order is also permuted every epoch); more rows mix better, cost more memory.
    """

    dataset: str | None = None
    source: str | None = None
    path: str | None = None
    protocol: str | None = None
    behaviors_path: str | None = None
    maxlen: int = 50
    seed: int = 0
    min_count: int = 1
    split: dict[str, Any] | None = None
    hash_buckets: dict[str, Any] = field(default_factory=dict)
    reader_options: dict[str, Any] = field(default_factory=dict)
    protocol_options: dict[str, Any] = field(default_factory=dict)
    on_error: str = "raise"
    streaming: bool | None = None
    streaming_threshold_mb: float = 2048.0
    shuffle_window: int = 262_144

    def reading(self) -> DataConfig:
        """Only how the samples are read (streaming and its window), not how they are built."""
        return DataConfig(streaming=self.streaming,
                          streaming_threshold_mb=self.streaming_threshold_mb,
                          shuffle_window=self.shuffle_window)


@dataclass(frozen=True)
class ModelSection:
    """[model]: feature widths plus the network's ModelConfig (its seed is training.seed).

    Args:
        embedding_dim: width of every embedding table.
        use_profile: feed the dataset's profile columns (gender, age, ...) to the model.
        network: the DIN / EmbeddingMLP hyper-parameters.
    """

    embedding_dim: int = 16
    use_profile: bool = True
    network: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        """The flat [model] table, as written back to TOML."""
        net = {k: v for k, v in self.network.to_dict().items() if k not in _MODEL_OWNED}
        return {"embedding_dim": self.embedding_dim, "use_profile": self.use_profile, **net}


@dataclass(frozen=True)
class TrainingConfig:
    """[training]: the optimisation and model selection.

    Args:
        epochs: maximum epochs.
        batch_size: training batch size.
        eval_batch_size: batch size of validation, test and prediction passes.
        optimizer: "adam", "adagrad", "sgd", "rmsprop" or "adamw".
        learning_rate: the optimizer's learning rate.
        seed: seeds the weights, the shuffle order and dropout (runs are reproducible).
        validation_fraction: each user's last fraction of training samples (in time order)
            held out for validation; 0 trains on all and keeps the last epoch.
        monitor: validation metric that picks the best epoch and drives early stopping.
        patience: epochs without improvement of `monitor` before stopping.
        num_threads: torch intra-op threads; 0 keeps torch's default.
        compile_dense: torch.compile the activation unit (model.compile_dense(); the first
            steps pay tens of seconds of compiling, then ~1.3x training samples/s on CPU).
        attention_bf16: bf16 GEMMs in the activation unit where the CPU has native bf16
            (model.attention_bf16(); GAUC unchanged on ml100k, docs/performance.md).
        device: where the model trains and scores: "cpu", "cuda" (cuda:LOCAL_RANK with nccl
            under torchrun) or "auto" (cuda when torch sees one); batches are moved to it.
        train_metric_rows: a training epoch with more rows computes its auc / gauc in
            metrics.jsonl over a uniform sample of this many rows (whole users; recorded
            there as train_metric_rows of train_rows), so memory does not grow with the
            data; loss and logloss stay over every row, validation and test metrics too.
            0: every row (memory grows with the epoch).
    """

    epochs: int = 5
    batch_size: int = 256
    eval_batch_size: int = 4096
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    seed: int = 1024
    validation_fraction: float = 0.1
    monitor: str = "val_gauc"
    patience: int = 2
    num_threads: int = 0
    compile_dense: bool = False
    attention_bf16: bool = False
    device: str = "cpu"
    train_metric_rows: int = 1_000_000  # epoch_metrics.DEFAULT_CAP (no torch import here)


DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class OutputConfig:
    """[output]: where and what the run writes.

    Args:
        dir: the run directory; None means runs/<name>-<timestamp> (chosen by the CLI).
        name: a short label of the run (tables, plots).
        checkpoint_every: also checkpoint every this many optimizer steps (0: epoch ends only).
        plots: write PNG training curves.
    """

    dir: str | None = None
    name: str = "run"
    checkpoint_every: int = 500
    plots: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, model, training and output sections."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{section: {key: value}} in TOML's shapes (lists, no None)."""
        out: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            section = getattr(self, name)
            raw = section.to_dict() if name == "model" else dataclasses.asdict(section)
            out[name] = {k: _plain(v) for k, v in raw.items() if v is not None}
        return out

    def replace(self, **sections: Any) -> ExperimentConfig:
        """A copy with whole sections replaced (dataclasses.replace on the top level)."""
        return dataclasses.replace(self, **sections)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def _model_section(raw: Mapping[str, Any]) -> ModelSection:
    if not isinstance(raw, Mapping):
        raise ConfigError("[model] must be a table")
    own = {k: raw[k] for k in ("embedding_dim", "use_profile") if k in raw}
    rest = {k: v for k, v in raw.items() if k not in own}
    for key in _MODEL_OWNED:
        if key in rest:
            raise ConfigError(f"unknown key model.{key}; the seed is training.{key}")
    net = section_kwargs(ModelConfig, rest, "model", skip=_MODEL_OWNED)
    if net.get("model") == "EmbeddingMLP" and "history_pooling" not in net:
        net["history_pooling"] = "sum"  # the paper's Base Model (and EmbeddingMLP's default)
    own_kwargs = section_kwargs(ModelSection, own, "model", skip=("network",))
    try:
        network = ModelConfig(**net)
    except ValueError as err:
        # ModelConfig's messages mostly start with the field name: make it the full key.
        text = str(err)
        first = text.split(" ", 1)[0].rstrip(":")
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        raise ConfigError(f"model.{text}" if first in known else f"[model]: {text}") from None
    return ModelSection(network=network, **own_kwargs)


def config_from_dict(
    raw: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None
) -> ExperimentConfig:
    """An ExperimentConfig from {section: {key: value}}; checks keys, types and paths.

    Args:
        raw: parsed TOML (or an equivalent dict).
        base_dir: directory relative paths are resolved against (default: the cwd).
    """
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; sections: {', '.join(SECTIONS)}")
    for name in SECTIONS:
        if not isinstance(raw.get(name, {}), Mapping):
            raise ConfigError(f"[{name}] must be a table, got {raw[name]!r}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    training_kwargs = section_kwargs(TrainingConfig, raw.get("training", {}), "training")
    model = _model_section(raw.get("model", {}))
    training = TrainingConfig(**training_kwargs)
    model = dataclasses.replace(
        model, network=dataclasses.replace(model.network, seed=training.seed))
    data = DataConfig(**section_kwargs(DataConfig, raw.get("data", {}), "data"))
    output = OutputConfig(**section_kwargs(OutputConfig, raw.get("output", {}), "output"))
    config = ExperimentConfig(
        data=_resolve_data_paths(data, base), model=model, training=training,
        output=dataclasses.replace(output, dir=_absolute(output.dir, base)),
    )
    check_config(config)
    return config


# (section, key) of the settings that are paths; data.path is not one for "synthetic".
PATH_KEYS = (("data", "dataset"), ("data", "path"), ("data", "behaviors_path"),
             ("output", "dir"))


def anchor_paths(raw: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a raw config with its relative path settings made absolute against base;
    other values (wrong types included, for config_from_dict to name) are left alone."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for section, key in PATH_KEYS:
        table = out.get(section)
        if not isinstance(table, dict) or not isinstance(table.get(key), str):
            continue
        if (section, key) == ("data", "path") and table.get("source") == "synthetic":
            continue
        table[key] = _absolute(table[key], base)
    return out


def _absolute(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_data_paths(data: DataConfig, base: Path) -> DataConfig:
    return dataclasses.replace(
        data,
        dataset=_absolute(data.dataset, base),
        path=_absolute(data.path, base) if data.source != "synthetic" else data.path,
        behaviors_path=_absolute(data.behaviors_path, base),
    )


def check_config(config: ExperimentConfig) -> None:
    """Value checks beyond types; each error names its key."""
    from dinrec.experiment.data_source import check_data_config

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
    _check_optimizer(t.optimizer)
    if t.device not in DEVICES:
        raise ConfigError(f"training.device must be one of {', '.join(DEVICES)}, "
                          f"got {t.device!r}")
    if config.model.embedding_dim < 1:
        raise ConfigError(f"model.embedding_dim must be >= 1, got {config.model.embedding_dim}")
    if config.output.checkpoint_every < 0:
        raise ConfigError("output.checkpoint_every must be >= 0 (0: only at epoch ends)")


def _check_optimizer(name: str) -> None:
    import torch

    from dinrec.training.optimizers import make_optimizer

    try:
        make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))])
    except ValueError as err:
        raise ConfigError(f"training.optimizer: {err}") from None


# ----- files and overrides -----------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """'section.key=value' -> (['section', 'key'], value); value is a TOML literal, else a
    plain string (so `--set model.att_activation=dice` needs no quotes)."""
    key, sep, value = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. training.epochs=3")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of `raw` with each 'section.key[.subkey]=value' set."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in SECTIONS:
            raise ConfigError(f"--set {text!r}: unknown section [{parts[0]}]; sections: "
                              f"{', '.join(SECTIONS)}")
        node = out.setdefault(parts[0], {})
        for part in parts[1:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[parts[-1]] = value
    return out


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a ConfigError naming it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: invalid TOML: {err}") from None


def load_config(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    base_dir: str | os.PathLike[str] | None = None,
    variant: str | None = None,
) -> ExperimentConfig:
    """Read a TOML config, apply a model variant and --set overrides, check it.

    Args:
        path: the TOML file.
        overrides: 'section.key=value' strings, applied last.
        base_dir: directory the file's relative paths are resolved against (default: the
            file's own directory); relative paths in overrides resolve against the cwd.
        variant: an ablation variant ("base", "din", "din-dice", ...; see ablation.py)
            applied to [model] before the overrides.

    Errors name the file and the key.
    """
    anchor = Path(base_dir) if base_dir is not None else Path(path).resolve().parent
    raw = anchor_paths(read_toml(path), anchor)
    if variant is not None:
        from dinrec.experiment.ablation import variant_config, variants

        try:
            (chosen,) = variants([variant])
        except ValueError as err:
            raise ConfigError(str(err)) from None
        raw = variant_config(raw, chosen)
    raw = apply_overrides(raw, overrides)
    try:
        return config_from_dict(raw)  # what is still relative came from --set: the cwd
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as TOML text (load_config reads it back to an equal config)."""
    from dinrec.experiment.toml_writer import dumps_toml

    return dumps_toml(config.to_dict())
