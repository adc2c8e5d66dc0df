"""History groups: the behavior sequences a DIN attends to, each with its own activation unit.

DeepCTR's DIN has one history: for each feature f of history_feature_list, the candidate's
SparseFeat `f` and the behaviors' VarLenSparseFeat `hist_<f>`. dinrec adds named groups
(DIN's `history_groups={"buy": ["item_id"]}`): group g reads `<g>_hist_<f>`, the prefix
DeepCTR's own DIEN uses for its second sequence (`neg_hist_<f>`). Each group has its own
mask (its own length_name, or id 0), maxlen, activation unit and interest vector;
VarLenDenseFeat columns with a group's prefix are that group's per-behavior values.

Example:
    >>> history_prefix(""), history_prefix("buy")
    ('hist_', 'buy_hist_')
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dinrec.feature_column import (
    FeatureColumn,
    SparseFeat,
    VarLenDenseFeat,
    VarLenSparseFeat,
)

HISTORY_PREFIX = "hist_"
# The bundle manifest's record of each history's features and the behavior types feeding it.
MANIFEST_KEY = "history_groups"
# A group name becomes part of input names and of module keys: letters, digits, underscores.
GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def history_prefix(group: str) -> str:
    """Input-name prefix of a group's sequences: "hist_" for DeepCTR's history ("")."""
    return f"{group}_{HISTORY_PREFIX}" if group else HISTORY_PREFIX


@dataclass(frozen=True)
class HistoryGroup:
    """One attended history: its candidate features, behavior sequences and side values.

    name: "" for DeepCTR's history_feature_list, else the history_groups key.
    features: the candidate features compared, in order (e.g. item_id, cate_id).
    columns: the behavior sequences `<prefix><f>` [B, T] aligned with `features`.
    queries: the candidate SparseFeats `f` [B].
    side: VarLenDenseFeat per-behavior values [B, T] / [B, T, D] entering the unit.
    """

    name: str
    features: tuple[str, ...]
    columns: tuple[VarLenSparseFeat, ...]
    queries: tuple[SparseFeat, ...]
    side: tuple[VarLenDenseFeat, ...]

    @property
    def label(self) -> str:
        """How errors and docs name the group."""
        return f"history group {self.name!r}" if self.name else "history_feature_list"

    @property
    def maxlen(self) -> int:
        return self.columns[0].maxlen

    @property
    def length_name(self) -> str | None:
        return self.columns[0].length_name

    @property
    def weighted(self) -> VarLenSparseFeat | None:
        """The sequence whose weight_name weights each behavior [B, T] (its weight_norm
        too), or None. A behavior is one event: a weight named by any of the history's
        sequences weights the whole behavior (its item and category alike); sequences that
        name one name the same (checked when the group is resolved)."""
        return next((c for c in self.columns if c.weight_name is not None), None)

    @property
    def side_dim(self) -> int:
        """S, the per-behavior values' total width."""
        return sum(c.dimension for c in self.side)


def check_group_spec(
    history_feature_list: Sequence[str], groups: Mapping[str, Sequence[str]] | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """history_groups as stored (name, features) pairs, checked; errors name the group."""
    if groups is None:
        return ()
    if not isinstance(groups, Mapping):
        raise ValueError("history_groups must map group names to lists of feature names, "
                         f"got {type(groups).__name__}")
    out = []
    for name, features in groups.items():
        if not isinstance(name, str) or not GROUP_NAME.match(name):
            raise ValueError(f"history group name {name!r} must start with a letter and hold "
                             "only letters, digits and underscores")
        if isinstance(features, str) or not all(isinstance(f, str) for f in features):
            raise ValueError(f"history group {name!r}: give a list of feature names, "
                             f"got {features!r}")
        feats = tuple(features)
        if not feats or len(set(feats)) != len(feats):
            raise ValueError(f"history group {name!r} needs distinct feature names, "
                             f"got {list(feats)}")
        out.append((name, feats))
    return tuple(out)


def resolve_groups(
    columns: Sequence[FeatureColumn],
    history_feature_list: Sequence[str],
    groups: Sequence[tuple[str, tuple[str, ...]]],
) -> tuple[HistoryGroup, ...]:
    """The attended histories: DeepCTR's first (when history_feature_list is not empty),
    then the named groups in declared order. Errors name the column or group at fault."""
    sparse = {c.name: c for c in columns if isinstance(c, SparseFeat)}
    varlen = {c.name: c for c in columns if isinstance(c, VarLenSparseFeat)}
    specs = ([("", tuple(history_feature_list))] if history_feature_list else []) + list(groups)
    prefixes = {history_prefix(name): name for name, _ in specs}
    side: dict[str, list[VarLenDenseFeat]] = {name: [] for name, _ in specs}
    for col in columns:
        if isinstance(col, VarLenDenseFeat):
            owner = _owner(col.name, prefixes)
            if owner is None:
                raise ValueError(
                    f"VarLenDenseFeat {col.name!r} belongs to no attended history: name it "
                    f"with one of the prefixes {sorted(prefixes) or ['hist_']} (a history "
                    "of that name must be declared)")
            side[owner].append(col)
    out = []
    seen: dict[str, str] = {}
    for name, features in specs:
        group_cols = []
        for f in features:
            key = history_prefix(name) + f
            where = f"history group {name!r}" if name else "history feature"
            if f not in sparse:
                raise ValueError(f"{where} {f!r} needs a SparseFeat named {f!r} (the candidate)")
            if key not in varlen:
                raise ValueError(f"{where} {f!r} needs a VarLenSparseFeat named {key!r} "
                                 "(the behavior sequence)")
            if key in seen:
                raise ValueError(f"sequence {key!r} is read by two histories "
                                 f"({seen[key]!r} and {name!r})")
            seen[key] = name
            group_cols.append(varlen[key])
        group = HistoryGroup(name, features, tuple(group_cols),
                             tuple(sparse[f] for f in features), tuple(side[name]))
        _check_shapes(group)
        out.append(group)
    return tuple(out)


def _owner(name: str, prefixes: Mapping[str, str]) -> str | None:
    """The group whose prefix starts `name` (the longest such prefix), or None."""
    matches = [p for p in prefixes if name.startswith(p) and len(name) > len(p)]
    return prefixes[max(matches, key=len)] if matches else None


def _check_shapes(group: HistoryGroup) -> None:
    """One maxlen and one length_name per group: its sequences share one mask."""
    cols: list[VarLenSparseFeat | VarLenDenseFeat] = [*group.columns, *group.side]
    head = f"history group {group.name!r} sequences" if group.name else "history features"
    if len({c.maxlen for c in cols}) > 1:
        detail = ", ".join(f"{c.name}={c.maxlen}" for c in cols)
        raise ValueError(f"{head} must share one maxlen, got {detail}")
    if len({c.length_name for c in group.columns}) > 1:
        detail = ", ".join(f"{c.name}={c.length_name!r}" for c in group.columns)
        raise ValueError(f"{head} must share one length_name, got {detail}")
    named = [c for c in group.columns if c.weight_name is not None]
    for col in named[1:]:
        # Two weight columns would weight one behavior twice over (its item by one, its
        # category by the other): no single sum_t a_t w_t k_t; refused rather than guessed.
        first = named[0]
        if col.weight_name != first.weight_name or col.weight_norm != first.weight_norm:
            raise ValueError(
                f"{head}: {first.name!r} (weight_name={first.weight_name!r}, weight_norm="
                f"{first.weight_norm}) and {col.name!r} (weight_name={col.weight_name!r}, "
                f"weight_norm={col.weight_norm}) weight the same behaviors differently; "
                "name one weight column (on one sequence or on all, with one weight_norm)")


def behavior_types(value: Any, where: str) -> list[str]:
    """A non-empty list of behavior type names (duplicates dropped); errors name `where`."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value or not all(
            isinstance(t, str) and t for t in value):
        raise ValueError(f"{where}: give a non-empty list of behavior type names, got {value!r}")
    return list(dict.fromkeys(value))


def history_manifest(
    groups: Sequence[HistoryGroup], behaviors: Mapping[str, Sequence[str]] | None
) -> dict[str, Any]:
    """The manifest's history_groups: each history's features and, where given, the
    behavior types that feed it ("" is history_feature_list's history), e.g.
    {"": {"features": ["item_id"], "behaviors": ["pv"]}, "buy": {"features": ["item_id"]}}.
    Errors name the history or type at fault."""
    given = dict(behaviors or {})
    names = [g.name for g in groups]
    unknown = [name for name in given if name not in names]
    if unknown:
        raise ValueError(f"history_behaviors: {unknown[0]!r} is not a history of the model; "
                         f"they are {names} ('' is history_feature_list's)")
    out: dict[str, Any] = {}
    for group in groups:
        entry: dict[str, Any] = {"features": list(group.features)}
        if group.name in given:
            entry["behaviors"] = behavior_types(given[group.name],
                                                f"history_behaviors[{group.name!r}]")
        out[group.name] = entry
    return out
