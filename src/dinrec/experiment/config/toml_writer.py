"""A small TOML writer for resolved experiment configs (tomllib only reads TOML).

Covers what a config holds: tables of scalars (str, int, float, bool), arrays of them and
inline tables; None values are left out, as TOML has no null.

Example:
    >>> print(dumps_toml({"training": {"epochs": 5, "lr": 0.001, "units": [256, 128]}}))
    [training]
    epochs = 5
    lr = 0.001
    units = [256, 128]
    <BLANKLINE>
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: Any, where: str) -> str:
    """One TOML value; `where` names the key for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, where) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        items = [f"{_key(str(k))} = {_value(v, f'{where}.{k}')}"
                 for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"{where}: cannot write a {type(value).__name__} as TOML")


def dumps_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text with one [table] per top-level key, keys in the order given."""
    lines: list[str] = []
    for table, body in tables.items():
        lines.append(f"[{_key(table)}]")
        for name, value in body.items():
            if value is not None:
                lines.append(f"{_key(name)} = {_value(value, f'{table}.{name}')}")
        lines.append("")
    return "\n".join(lines)
