"""What the behavior store holds, checked against the model served.

The store keeps raw ids and outlives models, so what it holds need not suit the model now
served: a model without a vocabulary takes encoded integers within its tables, and an event
appended for another model (or written by another tool) may hold an id this one refuses.
Such a value must never fail a rank call: the caller cannot fix what is stored. So

- events are checked when they arrive (a 422 naming the event's field), and
- at rank time a stored behavior, a stored candidate category or a stored profile value
  the model cannot take is left out (the behavior skipped, the category unknown, the
  profile value defaulted) and counted in dinrec_store_values_skipped_total, never an
  error.

With vocabularies (or hashed ids) every raw id encodes, and all of this costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dinrec.serving.encoding import FeatureEncoder, IdCodec, RequestError
from dinrec.serving.http.schemas import Event


def _codecs(encoder: FeatureEncoder, position: int) -> list[IdCodec]:
    """The codecs a stored value at `position` (0: item, 1: category) is fed to: as a
    behavior (history input) and as a candidate's (candidate input)."""
    names = [names[position] for names in (encoder.history, encoder.candidates)
             if len(names) > position]
    return [encoder.codecs[name] for name in dict.fromkeys(names)]


def check_events(encoder: FeatureEncoder, events: Sequence[Event]) -> None:
    """Raise RequestError naming the first event field the model cannot take."""
    for position, attribute in ((0, "item_id"), (1, "category")):
        for codec in _codecs(encoder, position):
            if codec.takes_any_id:
                continue
            for i, event in enumerate(events):
                value = getattr(event, attribute)
                if value is not None:  # raises naming the field when the codec refuses it
                    codec.encode([value], f"events[{i}].{attribute}", indexed=False)


def usable_history(
    encoder: FeatureEncoder, history: Sequence[tuple[Any, Any]], limit: int | None = None
) -> tuple[list[tuple[Any, Any]], int]:
    """(the latest `limit` (default: all) stored behaviors the model can take, oldest first;
    how many it could not take among those newer than the oldest one kept, i.e. skipped)."""
    checks = [
        (position, codec.accepts)
        for position, name in enumerate(encoder.history[:2])
        if not (codec := encoder.codecs[name]).takes_any_id
    ]
    if not checks:
        every = list(history)
        return (every if limit is None else every[max(len(every) - limit, 0):]), 0
    kept: list[tuple[Any, Any]] = []
    skipped = 0
    for behavior in reversed(history):  # newest first
        if limit is not None and len(kept) >= limit:
            break
        if all(behavior[position] is None or accepts(behavior[position])
               for position, accepts in checks):
            kept.append(behavior)
        else:
            skipped += 1
    return kept[::-1], skipped


def usable_categories(
    encoder: FeatureEncoder, categories: Sequence[str | None]
) -> tuple[list[str | None], int]:
    """(stored candidate categories, None where the model cannot take one; how many)."""
    if len(encoder.candidates) < 2:
        return list(categories), 0
    codec = encoder.codecs[encoder.candidates[1]]
    if codec.takes_any_id:
        return list(categories), 0
    out = [c if c is None or codec.accepts(c) else None for c in categories]
    return out, sum(1 for a, b in zip(out, categories, strict=True) if a != b)


def usable_profile(
    encoder: FeatureEncoder, profile: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """(the stored profile values the model can take; how many were left out)."""
    kept: dict[str, Any] = {}
    for name, value in profile.items():
        codec = encoder.codecs.get(name) if name in encoder.profile_sparse else None
        if not (codec is not None and codec.takes_any_id and isinstance(value, (str, int))
                and not isinstance(value, bool)):
            try:  # the encoder's own checks, on this one value (user id 0 is always valid)
                encoder.user(0, {name: value}, [])
            except RequestError:
                continue
        kept[name] = value
    return kept, len(profile) - len(kept)
