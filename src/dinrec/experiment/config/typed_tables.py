"""Raw TOML tables checked against a dataclass's field types; errors name the key.

Supported field types: int, float (an int is accepted), bool, str, `X | None`,
`tuple[T, ...]` (from a TOML array) and `dict[str, Any]` (from a TOML table).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Training:
    ...     epochs: int = 1
    >>> section_kwargs(Training, {"epochs": 3}, "training")
    {'epochs': 3}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any


class ConfigError(ValueError):
    """A mistake in an experiment config; the message names the key or file at fault."""


def _type_name(annotation: Any) -> str:
    if annotation is Any:
        return "any value"
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "a table"
    if annotation is type(None):
        return "absent"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        annotation, str(annotation))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` checked against `annotation` (int, float, bool, str, X | None, tuple, dict)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(annotation):
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            inner = typing.get_args(annotation)[0]
            return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    elif origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str and isinstance(value, str):
        return value
    raise ConfigError(
        f"{key} must be {_type_name(annotation)}, got {type(value).__name__} {value!r}")


def section_kwargs(
    cls: type, raw: Mapping[str, Any], prefix: str, skip: Sequence[str] = ()
) -> dict[str, Any]:
    """Checked keyword arguments for dataclass `cls` from the raw table [prefix].

    Args:
        cls: the section's dataclass.
        raw: the table as parsed from TOML.
        prefix: the section name, for messages ("training.epochs must be ...").
        skip: fields the table may not set.
    """
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                f"unknown key {prefix}.{key}; valid keys in [{prefix}]: {', '.join(known)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    return kwargs
