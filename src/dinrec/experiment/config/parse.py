"""An ExperimentConfig from a TOML file or a dict: keys checked, paths anchored, --set applied."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dinrec.experiment.config.checks import check_config
from dinrec.experiment.config.sections import (
    _MODEL_OWNED,
    SECTIONS,
    DataConfig,
    DistributedConfig,
    ExperimentConfig,
    ModelSection,
    OutputConfig,
    TrainingConfig,
)
from dinrec.experiment.config.typed_tables import ConfigError, section_kwargs
from dinrec.models.config import ModelConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package (tomllib's origin)
    import tomli as tomllib


# [model] keys of the ModelSection itself; the others are the network's ModelConfig.
_MODEL_OWN = ("embedding_dim", "use_profile", "history_groups", "use_time_gap")


def _model_section(raw: Mapping[str, Any]) -> ModelSection:
    if not isinstance(raw, Mapping):
        raise ConfigError("[model] must be a table")
    own = {k: raw[k] for k in _MODEL_OWN if k in raw}
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
    distributed = DistributedConfig(**section_kwargs(
        DistributedConfig, raw.get("distributed", {}), "distributed"))
    config = ExperimentConfig(
        data=_resolve_data_paths(data, base), model=model, training=training,
        output=dataclasses.replace(output, dir=_absolute(output.dir, base)),
        distributed=distributed,
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
    from dinrec.experiment.config.toml_writer import dumps_toml

    return dumps_toml(config.to_dict())
