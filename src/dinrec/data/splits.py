"""Train/test splits by time: each user's last fraction of samples, or a global cutoff.

Samples reach a split already sorted by (user, timestamp, input row), so "a user's last
samples" are the last rows of that user's run; equal timestamps keep the input order.

Example:
    >>> import numpy as np
    >>> TimeSplit(test_fraction=0.5).test_mask(np.array([0, 0, 0, 0, 1]),
    ...                                        np.array([1, 2, 3, 4, 9])).tolist()
    [False, False, True, True, True]
    >>> TimeSplit(cutoff=3).test_mask(np.array([0, 0, 0]), np.array([1, 3, 5])).tolist()
    [False, True, True]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# floor(n * (1 - f)) computed in floats can land just under an integer (e.g. 0.7 * 10).
_EPS = 1e-9


@dataclass(frozen=True)
class TimeSplit:
    """How samples are split into train and test by time; set exactly one of the two.

    Args:
        test_fraction: per user, the last `test_fraction` of that user's samples (in time
            order) go to test: a user with n samples keeps floor(n * (1 - test_fraction)) for
            training, so a user with one sample is test-only.
        cutoff: global timestamp (int64 seconds): samples at or after it go to test.
    """

    test_fraction: float | None = None
    cutoff: int | None = None

    def __post_init__(self) -> None:
        if (self.test_fraction is None) == (self.cutoff is None):
            raise ValueError("TimeSplit needs exactly one of test_fraction and cutoff")
        if self.test_fraction is not None and not 0.0 < float(self.test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction!r}")
        if self.cutoff is not None and (
            isinstance(self.cutoff, bool) or not isinstance(self.cutoff, (int, np.integer))
        ):
            raise ValueError(f"cutoff must be an int timestamp, got {self.cutoff!r}")

    def test_mask(self, user_codes: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """Which samples go to test.

        Args:
            user_codes: [N] int user codes, samples grouped by user (one contiguous run each).
            timestamps: [N] int64 seconds, ascending within each user's run.

        Returns:
            [N] bool, True for test.
        """
        if self.cutoff is not None:
            return cutoff_mask(timestamps, int(self.cutoff))
        assert self.test_fraction is not None
        return last_fraction_mask(user_codes, float(self.test_fraction))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in dataset.json."""
        return {"test_fraction": self.test_fraction, "cutoff": self.cutoff}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeSplit:
        """Inverse of to_dict; unknown keys raise."""
        unknown = set(data) - {"test_fraction", "cutoff"}
        if unknown:
            raise ValueError(f"unknown TimeSplit keys {sorted(unknown)}")
        return cls(test_fraction=data.get("test_fraction"), cutoff=data.get("cutoff"))


def group_starts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of each row's group in an array grouped into contiguous runs.

    Args:
        codes: [N] group keys, each group one contiguous run.

    Returns:
        (row_start [N] int64: index of the first row of the row's run,
         run_size [N] int64: length of the row's run).
    """
    n = len(codes)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    is_start = np.empty(n, dtype=bool)
    is_start[0] = True
    np.not_equal(codes[1:], codes[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    sizes = np.diff(np.append(starts, n))
    return np.repeat(starts, sizes).astype(np.int64), np.repeat(sizes, sizes).astype(np.int64)


def last_fraction_mask(user_codes: np.ndarray, test_fraction: float) -> np.ndarray:
    """Per user run, True on the rows after the first floor(n * (1 - test_fraction)).

    Args:
        user_codes: [N] user codes grouped into contiguous runs, each in time order.
        test_fraction: in (0, 1).

    Returns:
        [N] bool test mask.
    """
    start, size = group_starts(user_codes)
    position = np.arange(len(user_codes), dtype=np.int64) - start  # [N] rank within user
    n_train = np.floor(size * (1.0 - test_fraction) + _EPS).astype(np.int64)
    return position >= n_train


def cutoff_mask(timestamps: np.ndarray, cutoff: int) -> np.ndarray:
    """True where timestamp >= cutoff (test), as [N] bool."""
    return np.asarray(timestamps, dtype=np.int64) >= cutoff

