"""Raw request values -> model input arrays, through the bundle's vocabulary, checked.

Ids arrive raw (the strings or numbers of the original log). A feature with a vocabulary in
the bundle maps them through it; an id it has never seen becomes the unknown id 1, never an
error. A feature without one takes already-encoded ints, checked against its table size;
anything else is a RequestError naming the field (the HTTP layer turns it into a 422).

History arrays are cut to the longest valid history in the request instead of being padded to
maxlen: padded slots get exactly zero attention weight, so the scores are the same and a short
history costs proportionally less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dinrec.data.protocols.behavior_groups import SECONDS_PER_UNIT
from dinrec.data.vocabulary import OOV_ID, PAD_ID, Vocabularies
from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.history_groups import history_prefix
from dinrec.schema import FeatureSchema, HistoryGroup
from dinrec.serving.broadcast import candidate_inputs
from dinrec.serving.id_codec import IdCodec, RequestError, vocab_for

__all__ = ["Arrays", "FeatureEncoder", "IdCodec", "RequestError", "UserFeatures"]

Arrays = dict[str, np.ndarray]
# Dense inputs are float32: a larger magnitude would become inf inside the model.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The per-behavior value serving computes, as the data pipeline names it: <prefix>time_gap.
TIME_GAP = "time_gap"
# (row, input name) -> the request field to name in an error, e.g. "rows[2].gender".
Where = Callable[[int, str], str]


def time_gap_inputs(schema: FeatureSchema) -> dict[str, str]:
    """{history name: its time-gap input}: the per-behavior values serving computes, each
    `<prefix>time_gap` of width 1 (log1p hours since the behavior, as the data pipeline's
    behavior_groups protocol). Any other VarLenDenseFeat cannot be computed from the store:
    a ValueError names it."""
    out = {}
    for group in schema.groups:
        for col in group.side:
            if col.name != history_prefix(group.name) + TIME_GAP or col.dimension != 1:
                raise ValueError(
                    f"serving computes one per-behavior value, {history_prefix(group.name)}"
                    f"{TIME_GAP} (width 1: log1p hours since the behavior, from the stored "
                    f"timestamps); VarLenDenseFeat {col.name!r} (width {col.dimension}) "
                    "cannot be served")
            out[group.name] = col.name
    return out


@dataclass(frozen=True)
class UserFeatures:
    """One user's inputs as the encoder saw them.

    Args:
        arrays: {input name: [1, ...] array} of every user-side input.
        defaulted: profile inputs absent from both the request and the store.
    """

    arrays: Arrays
    defaulted: tuple[str, ...]
    # (time-gap input, the behaviors' timestamps [1, T] float64, NaN at padding): the gaps
    # are measured at request time (at()), so cached features never hold stale ones.
    times: tuple[tuple[str, np.ndarray], ...] = ()

    def at(self, now: float) -> Arrays:
        """The input arrays with each time gap measured to `now` (seconds), exactly as the
        data pipeline measures it to a sample's time: log1p(max(now - t, 0) / 3600), 0 at
        padding."""
        if not self.times:
            return self.arrays
        out = dict(self.arrays)
        for name, when in self.times:
            hours = np.maximum(now - when, 0.0) / SECONDS_PER_UNIT
            out[name] = np.where(np.isnan(when), 0.0, np.log1p(hours)).astype(np.float32)
        return out


class FeatureEncoder:
    """Builds the model's input arrays from raw values, for rank and stateless score requests.

    Args:
        schema: the bundle's FeatureSchema.
        vocabs: its vocabularies, or None (ids taken as encoded ints).
        user_feature: the SparseFeat fed with the request's user_id ("user_id" when the
            schema has it, else none: the id then only keys the behavior store).
    """

    def __init__(
        self, schema: FeatureSchema, vocabs: Vocabularies | None, user_feature: str | None = None
    ) -> None:
        self.schema = schema
        self.time_gaps = time_gap_inputs(schema)
        self.codecs: dict[str, IdCodec] = {}
        for col in schema.columns:
            if isinstance(col, (SparseFeat, VarLenSparseFeat)):
                self.codecs[col.name] = IdCodec(col, vocab_for(col, vocabs), schema)
        sparse_names = [c.name for c in schema.sparse]
        if user_feature is None and "user_id" in sparse_names:
            user_feature = "user_id"
        if user_feature is not None and user_feature not in sparse_names:
            raise ValueError(f"user feature {user_feature!r} is not a SparseFeat of the model")
        self.user_feature = user_feature
        self.candidates = candidate_inputs(schema)  # the item first, then its category
        if len(self.candidates) > 2:
            raise ValueError(
                "ranking takes an item and its category; this model's history features are "
                f"{list(self.candidates)}"
            )
        self.groups = schema.groups
        # Per history, which stored value feeds each of its columns: 0 the item, 1 its
        # category (the candidate input its feature is).
        self.slots = {g.name: tuple(self.candidates.index(f) for f in g.features)
                      for g in self.groups}
        self.history = tuple(c.name for c in schema.history)
        self.maxlen = max((g.maxlen for g in self.groups), default=0)
        taken = {*self.candidates, *(() if user_feature is None else (user_feature,))}
        self.profile_sparse = tuple(c.name for c in schema.sparse if c.name not in taken)
        weights = [p.weight_name for p in schema.pooled if p.weight_name is not None]
        self.profile_features = (
            *self.profile_sparse, *(p.name for p in schema.pooled), *weights,
            *(d.name for d in schema.dense),
        )
        # A score row names every input but the derived lengths; weights are optional.
        self.row_features = (
            *(c.name for c in schema.sparse),
            *(name for g in self.groups for name in _sequence_names(g)),
            *(p.name for p in schema.pooled), *(d.name for d in schema.dense),
        )
        # Each weighted history's weight input (weight_name) that is not also one of its
        # per-behavior values (those a row gives anyway): optional in a row, 1.0 if absent.
        self.history_weights = {
            g.name: g.weighted.weight_name for g in self.groups
            if g.weighted is not None and g.weighted.weight_name is not None
        }
        side_names = {c.name for g in self.groups for c in g.side}
        self.optional_row_features = frozenset(
            [*weights, *(w for w in self.history_weights.values() if w not in side_names)])

    # ----- rank requests -----------------------------------------------------------------
    def user(
        self, user_id: str | int, profile: Mapping[str, Any],
        history: Sequence[tuple[Any, ...]] = (),
        groups: Mapping[str, Sequence[tuple[Any, ...]]] | None = None,
    ) -> UserFeatures:
        """One user's inputs [1, ...] from profile values and behaviors (item, category),
        (item, category, timestamp) or (item, category, timestamp, weight), oldest first
        (each history's latest maxlen are used).

        Args:
            history: history_feature_list's behaviors.
            groups: each named history group's behaviors (absent: none). A history with a
                time gap needs the timestamps; a weighted history (weight_name) reads each
                behavior's weight, 1.0 where it has none.
        """
        unknown = sorted(set(profile) - set(self.profile_features))
        if unknown:
            raise RequestError(
                f"profile.{unknown[0]}",
                f"not a profile feature of this model; they are {list(self.profile_features)}",
            )
        arrays: Arrays = {}
        defaulted: list[str] = []
        if self.user_feature is not None:
            codec = self.codecs[self.user_feature]
            arrays[self.user_feature] = codec.encode([user_id], "user_id", indexed=False)
        self._profile([profile], arrays, lambda _, name: f"profile.{name}", defaulted)
        times = []
        for group in self.groups:
            where = f"history.{group.name}" if group.name else "history"
            given = (groups or {}).get(group.name, ()) if group.name else history
            recent = list(given)[-group.maxlen :]
            lists = [[b[slot] for b in recent] for slot in self.slots[group.name]]
            self._histories([lists], arrays, lambda _, __, w=where: w, group)  # type: ignore[misc]
            weight = self.history_weights.get(group.name)
            if weight is not None and weight not in arrays:
                weights = np.ones_like(arrays[group.columns[0].name], dtype=np.float32)  # [1, T']
                weights[0, : len(recent)] = [float(b[3]) if len(b) > 3 else 1.0 for b in recent]
                arrays[weight] = weights
            gap = self.time_gaps.get(group.name)
            if gap is not None:
                if any(len(b) < 3 for b in recent):
                    raise RequestError(where, f"this model reads the time since each behavior "
                                       f"({gap}): give (item, category, timestamp)")
                when = np.full((1, max(1, len(recent))), np.nan)
                when[0, : len(recent)] = [float(b[2]) for b in recent]
                times.append((gap, when))
        return UserFeatures(arrays, tuple(defaulted), tuple(times))

    def items(self, candidates: Sequence[Any], categories: Sequence[Any]) -> Arrays:
        """Candidate inputs [C] from raw item ids and their raw categories (None: unknown)."""
        item = self.candidates[0]
        arrays = {item: self.codecs[item].encode(candidates, "candidates")}
        if len(self.candidates) > 1:
            arrays[self.candidates[1]] = self._ids(self.candidates[1], categories, "categories")
        return arrays

    # ----- stateless score requests ------------------------------------------------------
    def rows(self, rows: Sequence[Mapping[str, Any]]) -> tuple[Arrays, Arrays]:
        """(user-side arrays [N, ...], candidate arrays [N]) from rows of named features.

        Every feature but the pooled weights is required; history lists may be shorter
        than maxlen (the most recent maxlen are used); length inputs are derived.
        """
        known = set(self.row_features) | self.optional_row_features
        for i, row in enumerate(rows):
            for name in self.row_features:
                if name not in row:
                    raise RequestError(f"rows[{i}].{name}", "missing feature")
            for name in row:
                if name not in known:
                    raise RequestError(
                        f"rows[{i}].{name}",
                        f"not a feature of this model; they are {list(self.row_features)}",
                    )
        user: Arrays = {}
        cand: Arrays = {}
        for col in self.schema.sparse:
            values = [row[col.name] for row in rows]
            for i, value in enumerate(values):
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise RequestError(f"rows[{i}].{col.name}", f"expected one id, got {value!r}")
            try:
                ids = self.codecs[col.name].encode(values, "rows")
            except RequestError as err:  # "rows[i]" -> "rows[i].name"
                raise RequestError(f"{err.field}.{col.name}", err.message) from None
            (cand if col.name in self.candidates else user)[col.name] = ids
        self._profile(rows, user, lambda i, name: f"rows[{i}].{name}", [])
        for group in self.groups:
            names = _sequence_names(group)
            lists = []
            for i, row in enumerate(rows):
                per_row = [_as_list(row[name], f"rows[{i}].{name}") for name in names]
                if len({len(v) for v in per_row}) > 1:
                    raise RequestError(
                        f"rows[{i}].{names[-1]}",
                        f"history lists {names} must have the same length",
                    )
                lists.append([v[-group.maxlen :] for v in per_row])
            n_ids = len(group.columns)
            self._histories([r[:n_ids] for r in lists], user, lambda i, name: f"rows[{i}].{name}",
                            group)
            width = user[group.columns[0].name].shape[1]
            for k, side in enumerate(group.side):
                numbers = np.zeros((len(rows), width), dtype=np.float32)
                for r, per_row in enumerate(lists):
                    found = per_row[n_ids + k]
                    numbers[r, : len(found)] = _floats(found, len(found), f"rows[{r}].{side.name}")
                user[side.name] = numbers
            weight = self.history_weights.get(group.name)
            if weight is not None and weight not in user:
                user[weight] = self._row_weights(rows, group, weight, width)
        return user, cand

    @staticmethod
    def _row_weights(
        rows: Sequence[Mapping[str, Any]], group: HistoryGroup, name: str, width: int
    ) -> np.ndarray:
        """A history's behavior weights [R, width] from score rows: one finite number per
        behavior of the row's history, the most recent maxlen kept with their behaviors;
        1.0 each when the row gives none."""
        out = np.ones((len(rows), width), dtype=np.float32)
        for r, row in enumerate(rows):
            if name not in row:
                continue
            field = f"rows[{r}].{name}"
            behaviors = len(row[group.columns[0].name])  # checked to be a list already
            kept = _floats(_as_list(row[name], field), behaviors, field)[-group.maxlen :]
            out[r, : len(kept)] = kept
        return out

    # ----- shared pieces -----------------------------------------------------------------
    def _ids(
        self, name: str, values: Sequence[Any], field: str, *, indexed: bool = True
    ) -> np.ndarray:
        """Encode with None standing for an absent value (unknown / padding id)."""
        codec = self.codecs[name]
        present = [i for i, v in enumerate(values) if v is not None]
        out = np.full(len(values), codec.missing_id, dtype=np.int64)
        if present:
            try:
                out[present] = codec.encode([values[i] for i in present], field, indexed=False)
            except RequestError as err:
                if not indexed:
                    raise
                # Name the position among all values, absent ones included.
                bad = next(i for i in present if not codec.accepts(values[i]))
                raise RequestError(f"{field}[{bad}]", err.message) from None
        return out

    def _histories(
        self, rows: Sequence[Sequence[Sequence[Any]]], arrays: Arrays, where: Where,
        group: HistoryGroup,
    ) -> None:
        """One history's inputs [R, T'] from per row, per column raw lists.

        T' is the longest history (at least 1), post-padded with 0; the length input, if
        the history has one, holds each row's count.
        """
        lengths = np.array([len(per_row[0]) if per_row else 0 for per_row in rows],
                           dtype=np.int64)
        width = max(1, int(lengths.max(initial=0)))
        for n, col in enumerate(group.columns):
            name = col.name
            out = np.zeros((len(rows), width), dtype=np.int64)
            for r, per_row in enumerate(rows):
                values = per_row[n] if n < len(per_row) else [None] * int(lengths[r])
                if not values:
                    continue
                encoded = self._ids(name, values, where(r, name))
                if n == 0:
                    # A real behavior must never read as padding in the id-0 mask.
                    encoded[encoded == PAD_ID] = OOV_ID
                out[r, : len(values)] = encoded
            arrays[name] = out
        if group.length_name is not None:
            arrays[group.length_name] = lengths

    def _profile(
        self, sources: Sequence[Mapping[str, Any]], arrays: Arrays, where: Where,
        defaulted: list[str],
    ) -> None:
        """Profile ids [R], pooled id lists [R, maxlen] (+ lengths, weights), dense [R, D].

        `sources` are rank profiles or score rows; absent values are recorded in
        `defaulted` and take the missing id, an empty list, or 0.0.
        """
        for name in self.profile_sparse:
            if name in arrays:  # score rows: encoded already with the other sparse ids
                continue
            values = [src.get(name) for src in sources]
            for r, value in enumerate(values):
                if isinstance(value, (list, dict)):
                    raise RequestError(where(r, name), f"expected one id, got {value!r}")
            defaulted += [name for value in values if value is None]
            arrays[name] = self._ids(name, values, where(0, name), indexed=False)
        for seq in self.schema.pooled:
            ids = np.zeros((len(sources), seq.maxlen), dtype=np.int64)
            weights = np.ones((len(sources), seq.maxlen), dtype=np.float32)
            lengths = np.zeros(len(sources), dtype=np.int64)
            for r, src in enumerate(sources):
                if seq.name not in src:
                    defaulted.append(seq.name)
                    continue
                values = _as_list(src[seq.name], where(r, seq.name))[-seq.maxlen :]
                ids[r, : len(values)] = self.codecs[seq.name].encode(values, where(r, seq.name))
                lengths[r] = len(values)
                if seq.weight_name is not None and seq.weight_name in src:
                    w = _floats(src[seq.weight_name], len(values), where(r, seq.weight_name))
                    weights[r, : len(values)] = w
            arrays[seq.name] = ids
            if seq.length_name is not None:
                arrays[seq.length_name] = lengths
            if seq.weight_name is not None:
                arrays[seq.weight_name] = weights
        for dense in self.schema.dense:
            numbers = np.zeros((len(sources), dense.dimension), dtype=np.float32)
            for r, src in enumerate(sources):
                if dense.name in src:
                    numbers[r] = _floats(src[dense.name], dense.dimension, where(r, dense.name))
                else:
                    defaulted.append(dense.name)
            arrays[dense.name] = numbers[:, 0] if dense.dimension == 1 else numbers


def _sequence_names(group: HistoryGroup) -> list[str]:
    """A history's list inputs in a score row: its id sequences, then its values."""
    return [c.name for c in group.columns] + [c.name for c in group.side]


def _as_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise RequestError(field, f"expected a list, got {type(value).__name__}")
    return value


def _floats(value: Any, width: int, field: str) -> np.ndarray:
    """A number (width 1) or a list of `width` numbers -> float32 [width], all finite."""
    items = value if isinstance(value, list) else [value]
    if len(items) != width:
        raise RequestError(field, f"expected {width} number(s), got {len(items)}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not _float32(item):
            shown = item if not isinstance(item, int) or abs(item) < 10**20 else "a huge integer"
            raise RequestError(
                field, f"expected finite numbers within float32 range (|x| <= {FLOAT32_MAX:.4g}),"
                f" got {shown!r}"
            )
    return np.asarray(items, dtype=np.float32)


def finite_float32(value: Any, field: str) -> float:
    """One number as a float32 input takes it (a RequestError naming `field` if it is not
    finite within float32 range, or not a number)."""
    return float(_floats(value, 1, field)[0])


def _float32(number: float) -> bool:
    """`number` is finite and within float32 range (an int past float range is not)."""
    try:
        return math.isfinite(number) and abs(float(number)) <= FLOAT32_MAX
    except OverflowError:
        return False
