"""EventLog: the typed table every reader returns and every sample builder consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EventLog:
    """A behavior log, one row per event, columns as aligned numpy arrays of length N.

    Raw ids are kept as strings (numpy unicode or object arrays) so that every source maps
    through one Vocabulary; the vocabulary, fitted on the training split, turns them into
    int64 ids (0 = padding, 1 = unknown, known ids from 2).

    Args:
        user: [N] raw user ids (str).
        item: [N] raw item ids (str).
        category: [N] raw category ids (str); "" where the source has none.
        timestamp: [N] int64 seconds since the epoch.
        rating: [N] float32 explicit ratings, or None.
        label: [N] int8 explicit click labels in {0, 1}, or None.
        behavior: [N] behavior types (str, e.g. pv/cart/fav/buy), or None.
        profile: extra per-event columns (str), e.g. a user's gender joined onto each row.
        source: short name of where the log came from, for messages and dataset.json.
    """

    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    timestamp: np.ndarray
    rating: np.ndarray | None = None
    label: np.ndarray | None = None
    behavior: np.ndarray | None = None
    profile: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "events"

    def __post_init__(self) -> None:
        n = len(self.user)
        columns: dict[str, np.ndarray | None] = {
            "item": self.item, "category": self.category, "timestamp": self.timestamp,
            "rating": self.rating, "label": self.label, "behavior": self.behavior,
        }
        columns.update({f"profile column {k!r}": v for k, v in self.profile.items()})
        for name, col in columns.items():
            if col is not None and len(col) != n:
                raise ValueError(
                    f"EventLog from {self.source}: column {name} has {len(col)} rows, "
                    f"user has {n}"
                )
        if self.timestamp.dtype != np.int64:
            raise ValueError(
                f"EventLog from {self.source}: timestamp must be int64 seconds, "
                f"got {self.timestamp.dtype}"
            )

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> EventLog:
        """Rows selected by an integer or boolean index, all columns alike."""

        def pick(col: np.ndarray | None) -> np.ndarray | None:
            return None if col is None else col[index]

        return EventLog(
            user=self.user[index], item=self.item[index], category=self.category[index],
            timestamp=self.timestamp[index], rating=pick(self.rating), label=pick(self.label),
            behavior=pick(self.behavior),
            profile={k: v[index] for k, v in self.profile.items()}, source=self.source,
        )
