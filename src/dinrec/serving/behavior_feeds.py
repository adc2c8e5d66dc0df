"""Which stored behavior types feed each attended history of a served bundle.

Events carry an optional behavior type (`"behavior": "buy"`); a bundle with history groups
reads each group from the types that feed it. The bundle's manifest may record them:

    "history_groups": {"": {"features": ["item_id", "cate_id"], "behaviors": ["pv"]},
                       "buy": {"features": ["item_id", "cate_id"], "behaviors": ["buy"]}}

("" is history_feature_list's history). Where a group has no `behaviors` entry (a bundle
saved without the mapping), its own name is the type that feeds it. Untyped events always
feed history_feature_list's history, so clients that send no type keep working; a model with
that one history and no mapping reads every stored event, whatever its type (as before types
existed). An event whose type feeds no history of the model is refused (422 naming
`events[i].behavior`): stored, it would be read by nothing.

Example:
    >>> recorded = {"history_groups": {"buy": {"behaviors": ["buy", "cart"]}}}
    >>> BehaviorFeeds.of(schema, recorded).describe()                      # doctest: +SKIP
    {'': [None], 'buy': ['buy', 'cart']}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dinrec.history_groups import MANIFEST_KEY, behavior_types
from dinrec.schema import FeatureSchema, HistoryGroup
from dinrec.serving.id_codec import RequestError
from dinrec.serving.stores import GroupRead


@dataclass(frozen=True)
class Feed:
    """One attended history and the stored behavior types it reads (None: untyped)."""

    group: HistoryGroup
    types: tuple[str | None, ...]


@dataclass(frozen=True)
class BehaviorFeeds:
    """The histories of a bundle and what feeds each.

    every_type: one history and no mapping: every stored event feeds it (the plain path,
    read by the store's untyped lookup).
    """

    feeds: tuple[Feed, ...]
    every_type: bool

    @classmethod
    def of(cls, schema: FeatureSchema, manifest: Mapping[str, Any]) -> BehaviorFeeds:
        """Read the manifest's mapping (tolerant of a bundle without one)."""
        recorded = manifest.get(MANIFEST_KEY) or {}
        if not isinstance(recorded, Mapping):
            raise ValueError(f"manifest {MANIFEST_KEY} must be an object, got {recorded!r}")
        groups = schema.groups
        names = [g.name for g in groups]
        for name in recorded:
            if name not in names:
                raise ValueError(f"manifest {MANIFEST_KEY}: {name!r} is not a history of the "
                                 f"model; they are {names}")
        feeds = []
        for group in groups:
            entry = recorded.get(group.name) or {}
            mapped = ("behaviors" in entry and behavior_types(
                entry["behaviors"], f"manifest {MANIFEST_KEY}[{group.name!r}].behaviors"))
            types: tuple[str | None, ...] = tuple(mapped) if mapped else (
                () if not group.name else (group.name,))
            if not group.name:
                types = (None, *types)
            feeds.append(Feed(group, types))
        plain = len(groups) == 1 and not groups[0].name and "behaviors" not in (
            recorded.get("") or {})
        return cls(tuple(feeds), plain)

    @property
    def known_types(self) -> list[str]:
        """Every named type some history reads."""
        return sorted({t for f in self.feeds for t in f.types if t is not None})

    def check(self, behavior: str | None, field: str) -> None:
        """Raise RequestError (naming `field`) for an event type no history reads."""
        if self.every_type or any(behavior in f.types for f in self.feeds):
            return
        shown = self.known_types
        if behavior is None:
            raise RequestError(field, "required: this model has no history fed by untyped "
                               f"events; its histories read the types {shown}")
        raise RequestError(field, f"{behavior!r} feeds no history of this model; its "
                           f"histories read the types {shown}"
                           + (" (or untyped events)" if any(None in f.types
                                                            for f in self.feeds) else ""))

    def reads(self, factor: int = 1) -> tuple[GroupRead, ...]:
        """The store reads of every history: its types, `factor` x its maxlen."""
        return tuple(GroupRead(f.types, factor * f.group.maxlen) for f in self.feeds)

    def describe(self) -> dict[str, list[str | None]]:
        """{history name ("" for history_feature_list's): types (None: untyped)}."""
        return {f.group.name: list(f.types) for f in self.feeds}
