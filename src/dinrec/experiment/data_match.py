"""Does a dataset hold the samples a model or a config expects? Protocol and options compared.

Two datasets of the same log built with different protocol options (say, ml-100k's rating
protocol with history = "all" instead of "positive") have the same columns, so a model
trained on one scores the other without any error, and reports metrics that mean something
else (AUC 0.7742 instead of 0.7920). So:

- a bundle written by `dinrec train` records how its training samples were built (the
  dataset.json protocol, options and source: `recorded_protocol`), and evaluating it on a
  dataset built otherwise warns, or with on_mismatch="error" refuses, naming each difference;
- `dinrec train CONFIG --data DATASET` checks that DATASET was built as CONFIG's [data]
  says (`config_differences`) before training on it.

Example:
    >>> differences({"protocol": "rating", "options": {"history": "positive"}},
    ...             {"protocol": "rating", "options": {"history": "all"}})
    ["options.history: 'positive' expected, the dataset has 'all'"]
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping
from typing import Any

from dinrec.data.dataset import Dataset, DatasetMeta
from dinrec.experiment.config import DataConfig

ON_MISMATCH = ("warn", "error", "ignore")
DATA_KEY = "data"  # the bundle manifest's extra[...] holding recorded_protocol()
HISTORY_KEY = "history"  # recorded_protocol's history groups, when a dataset has any


class DatasetMismatchWarning(UserWarning):
    """A model is scored on a dataset built differently from its training data."""


class DatasetMismatchError(ValueError):
    """The same, refused (on_mismatch="error")."""


def recorded_protocol(meta: DatasetMeta) -> dict[str, Any]:
    """How a dataset's samples were built: {"source", "protocol", "options"} (JSON-ready),
    plus "history" (groups, time gap, sample behaviors) when it was built with them."""
    out = {"source": meta.source, "protocol": meta.protocol, "options": dict(meta.options)}
    history = history_record(meta.history_groups, meta.history_time_gap, meta.sample_behaviors)
    return {**out, HISTORY_KEY: history} if history is not None else out


def history_record(
    groups: Mapping[str, Any], time_gap: bool, sample_behaviors: Any
) -> dict[str, Any] | None:
    """The history-group settings a dataset was (or a config would be) built with; None
    for none, so datasets and bundles without groups record what they always did."""
    if not groups and not time_gap and sample_behaviors is None:
        return None
    return {"groups": {g: list(t) for g, t in groups.items()}, "time_gap": bool(time_gap),
            "sample_behaviors": None if sample_behaviors is None else list(sample_behaviors)}


def differences(
    expected: Mapping[str, Any], actual: Mapping[str, Any], prefix: str = "",
    only_expected: bool = False, want: str = "expected",
) -> list[str]:
    """One line per setting whose value differs, as 'key.sub: X expected, the dataset has Y'.

    Args:
        expected, actual: nested dicts of settings.
        prefix: the dotted key of the dicts (for nested calls).
        only_expected: compare only the keys of `expected` that `actual` also has (a
            partial expectation, e.g. what a config states).
        want: how the expected side is named ("expected" follows the value; any other
            wording, e.g. "trained with", precedes it).
    """
    out: list[str] = []
    keys = [k for k in expected if k in actual] if only_expected \
        else sorted(set(expected) | set(actual), key=str)
    for key in keys:
        name = f"{prefix}{key}"
        value, have = expected.get(key, "absent"), actual.get(key, "absent")
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            out += differences(value, have, f"{name}.", only_expected, want)
        elif value != have:
            said = f"{value!r} expected" if want == "expected" else f"{want} {value!r}"
            out.append(f"{name}: {said}, the dataset has {have!r}")
    return out


def bundle_protocol(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a bundle's manifest records of its training data (None: nothing recorded, as
    for a model saved with model.save() or by an older dinrec)."""
    extra = manifest.get("extra") or {}
    recorded = extra.get(DATA_KEY)
    return dict(recorded) if isinstance(recorded, Mapping) else None


def check_bundle_dataset(
    bundle: str | os.PathLike[str], manifest: Mapping[str, Any], dataset: Dataset,
    on_mismatch: str = "warn",
) -> list[str]:
    """The differences between a bundle's training data and `dataset`; warned or raised.

    Args:
        on_mismatch: "warn" (DatasetMismatchWarning), "error" (DatasetMismatchError) or
            "ignore".
    """
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {', '.join(ON_MISMATCH)}, "
                         f"got {on_mismatch!r}")
    trained = bundle_protocol(manifest)
    if trained is None:
        return []
    found = differences(trained, recorded_protocol(dataset.meta), want="trained with")
    if found and on_mismatch != "ignore":
        text = (f"{dataset.path} was built differently from the data {bundle} was trained "
                f"on ({'; '.join(found)}): its metrics are not comparable to the run's")
        if on_mismatch == "error":
            raise DatasetMismatchError(text)
        warnings.warn(text, DatasetMismatchWarning, stacklevel=3)
    return found


def config_expectation(data: DataConfig) -> dict[str, Any]:
    """What a [data] section that builds from a raw log implies of the dataset.json it would
    write: protocol and options (the protocol's defaults where the config says nothing)."""
    from dinrec.data.protocols import DEFAULT_SPLIT, PROTOCOLS
    from dinrec.data.splits import TimeSplit

    if data.protocol is None or data.protocol not in PROTOCOLS:
        return {}
    params = inspect.signature(PROTOCOLS[data.protocol]).parameters
    options: dict[str, Any] = {
        name: p.default for name, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and isinstance(p.default, (str, int, float))
    }
    options.update(data.protocol_options)
    options["maxlen"] = data.maxlen
    if "split" in params:
        split = TimeSplit.from_dict(data.split) if data.split else DEFAULT_SPLIT
        options["split"] = split.to_dict()
    if "seed" in params:
        options["seed"] = data.seed
    out = {"protocol": data.protocol, "options": options}
    history = history_record(data.history_groups, data.history_time_gap, data.sample_behaviors)
    return {**out, HISTORY_KEY: history} if history is not None else out


def config_differences(data: DataConfig, meta: DatasetMeta) -> list[str]:
    """How a dataset differs from what `data` (a raw-log [data] section) would build.

    The history groups are compared whether or not either side has them: a dataset with
    groups is not what a [data] without them builds (the model would attend to them).
    """
    expected, actual = config_expectation(data), recorded_protocol(meta)
    if not expected:
        return []
    history = {HISTORY_KEY: expected.pop(HISTORY_KEY, "absent")}
    return (differences(expected, actual, only_expected=True)
            + differences(history, {HISTORY_KEY: actual.get(HISTORY_KEY, "absent")}))
