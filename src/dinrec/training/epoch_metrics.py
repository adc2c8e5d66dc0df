"""A training epoch's rows for its metrics, in memory bounded by a row cap.

AUC and GAUC rank every row of the epoch at once, so keeping all of a training epoch's
scores grows with the data: 16 bytes a row through the epoch, then several float64 copies a
row while the metrics sort them (a 16M-row streamed epoch peaked at 2.84 GiB, see
docs/distributed.md). EpochRows keeps instead:

- every row while the epoch has at most ``cap`` rows: the metrics are those of all rows,
  computed exactly as without a cap;
- beyond ``cap`` rows, a uniform sample of ``cap`` of them, without replacement, over which
  the rank metrics (AUC, GAUC) are computed; the row-mean metrics (logloss, accuracy) stay
  exact, summed in float64 over every row.

The sample is a bottom-k sample: row i of an epoch gets a 64-bit key, a hash (splitmix64) of
(seed, epoch, i), and the sample is the ``cap`` rows with the smallest keys (ties: the
earlier row). When the rows carry groups (the user ids GAUC groups by), the key's high bits
hash the group instead, so the sample is a uniform sample of whole users, filled up to
``cap`` rows with a uniform part of one more user's rows: every sampled user's AUC is then
that user's exact AUC over the epoch, where a sample of single rows would leave most users a
handful of rows, or one class. The sample depends only on (seed, epoch, the rows and their
order), so it is deterministic, the same whatever the batch size, and a resumed epoch draws
the same one. Rows whose key cannot enter the sample are dropped a chunk at a time: at most
2 * cap rows, plus a chunk of min(cap, 65,536) rows and a batch, are held.

Only training-epoch metrics are sampled: validation and test metrics (Trainer.evaluate) are
computed over every row.

Example:
    >>> import torch
    >>> rows = EpochRows(cap=2, seed=0, epoch=0)
    >>> rows.append(torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.0, 0.0, 1.0]))
    >>> rows.rows, rows.sampled
    (3, True)
    >>> len(rows.sample()[0])
    2
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dinrec.metrics import (
    Metric,
    accuracy,
    accuracy_terms,
    compute_metrics,
    logloss,
    logloss_terms,
)

DEFAULT_CAP = 1_000_000  # rows
CHUNK_ROWS = 65_536  # past the cap, rows are keyed and filtered this many at a time
_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_HIGH40 = np.uint64(((1 << 40) - 1) << 24)


class Column:
    """One epoch's per-row values (scores, labels, groups), appended batch by batch.

    The rows go into one tensor that doubles when full (never beyond ``limit`` rows). A list
    of small per-batch tensors kept alive through the epoch fragments the heap between each
    step's large activations: that cost +130 MiB of peak RSS over an ml100k next-item epoch
    (766 batches).

    Args:
        values: rows to start with [n] (any shape; flattened), or None.
        limit: the most rows the column will hold (caps the doubling), or None.
    """

    def __init__(self, values: torch.Tensor | None = None, limit: int | None = None) -> None:
        self._data: torch.Tensor | None = None
        self._size = 0
        self.limit = limit
        if values is not None:
            self.append(values)

    def append(self, values: torch.Tensor) -> None:
        flat = values.detach().reshape(-1)  # [b]
        end = self._size + flat.numel()
        if self._data is None or end > self._data.numel():
            size = max(end, 2 * self._size, 4096)
            grown = flat.new_empty(max(end, min(size, self.limit)) if self.limit else size)
            if self._data is not None:
                grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = flat
        self._size = end

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def tensor(self) -> torch.Tensor | None:
        """A copy of the rows so far [n], or None when there are none."""
        return None if self._data is None or not self else self._data[: self._size].clone()

    def select(self, index: torch.Tensor, start: int = 0) -> None:
        """Keep rows[:start] and, after them, rows[start:][index] (index [k] int64, in place)."""
        if self._data is None:
            return
        rows = self._data[start : self._size][index.to(self._data.device)]  # [k]
        self._data[start : start + rows.numel()] = rows
        self._size = start + rows.numel()

    def view(self) -> torch.Tensor:
        """The rows so far [n], without a copy (valid until the next append)."""
        if self._data is None:
            raise ValueError("the column has no rows")
        return self._data[: self._size]


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 [n]: a bijection, so distinct inputs keep apart."""
    z = (z ^ (z >> np.uint64(30))) * _C1
    z = (z ^ (z >> np.uint64(27))) * _C2
    return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=64)
def _base(seed: int, epoch: int) -> np.ndarray:
    """[1] uint64: where the epoch's row hashes start."""
    base = _mix(np.array([seed & _M64], dtype=np.uint64) + _GOLDEN)
    base = _mix(base ^ np.array([epoch & _M64], dtype=np.uint64))
    base.flags.writeable = False  # shared by every call (cached)
    return base


def row_keys(
    seed: int, epoch: int, start: int, n: int, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Sample keys of an epoch's rows start .. start + n - 1: int64 [n].

    A row's hash is splitmix64 of (a base drawn from seed and epoch) + i * golden ratio, the
    generator's own sequence: a function of (seed, epoch, i) alone, distinct for every row.
    With groups [n] (int ids) the key's top 40 bits are instead a hash of the row's group
    and only its low 24 bits the row's, so the smallest keys are whole groups (users) and a
    uniform sample of the rows of the last group taken.
    """
    base = _base(seed, epoch)
    index = np.arange(start, start + n, dtype=np.uint64)  # [n]
    keys = _mix(base + (index + np.uint64(1)) * _GOLDEN)  # [n]; uint64 arithmetic wraps
    if groups is not None:
        ids = groups.detach().cpu().reshape(-1).to(torch.int64).numpy().view(np.uint64)
        group = _mix(_mix(ids + _GOLDEN) ^ base)  # [n]
        keys = (group & _HIGH40) | (keys & ~_HIGH40)
    return torch.from_numpy(keys.view(np.int64))


# Metrics that are the mean of a per-row term: exact over every row whatever the cap. The
# terms are the metrics' own (dinrec.metrics), on the float32 sigmoid the scores get.
ROW_TERMS: dict[Callable[..., float], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    logloss: logloss_terms,
    accuracy: accuracy_terms,
}


class EpochRows:
    """One training epoch's (score, label, group) rows: all of them, or a uniform sample.

    Past the cap, rows are first appended as they come and keyed, filtered and summed a
    chunk of ``min(cap, 65,536)`` rows at a time (vectorised: the per-batch cost stays that
    of three appends); the sample does not depend on where chunks end.

    Args:
        cap: the most rows kept; beyond it, a uniform sample of ``cap`` rows (see the module
            docstring). None keeps every row.
        seed: with ``epoch``, fixes the sample.
        epoch: the epoch (0-based); each epoch draws another sample.
        metrics: the metrics that will be computed; those in ROW_TERMS are summed over every
            row once the cap is passed.

    Attributes:
        rows: rows appended so far (all of them, sampled or not).
    """

    def __init__(
        self, cap: int | None, seed: int = 0, epoch: int = 0,
        metrics: Sequence[Metric] = (),
    ) -> None:
        if cap is not None and cap < 1:
            raise ValueError(f"cap must be >= 1 rows or None (no cap), got {cap}")
        self.cap = cap
        self.seed = seed
        self.epoch = epoch
        self.metrics = list(metrics)
        self.rows = 0
        self._chunk = 0 if cap is None else min(cap, CHUNK_ROWS)
        self._limit = None if cap is None else 2 * cap + self._chunk
        self.scores = Column(limit=self._limit)
        self.labels = Column(limit=self._limit)
        self.groups = Column(limit=self._limit)
        # Past the cap: the first `keyed` held rows are filtered and keyed (keys [keyed]);
        # the rows after them arrived since the last chunk was processed.
        self.keyed = 0
        self.keys = Column(limit=self._limit)
        self.threshold: int | None = None  # rows keyed >= this cannot enter the sample
        self.sums: dict[str, torch.Tensor] = {}  # running float64 sums of ROW_TERMS metrics

    @property
    def sampled(self) -> bool:
        """Whether the epoch passed the cap (rank metrics come from a sample)."""
        return self.cap is not None and self.rows > self.cap

    def __len__(self) -> int:
        """Rows held now (at most 2 * cap + a chunk + a batch)."""
        return len(self.scores)

    def append(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> None:
        """Add a batch's rows: logits [b], labels [b], groups [b] or None."""
        self.scores.append(logits)
        self.labels.append(labels)
        if groups is not None:
            self.groups.append(groups)
        self.rows += logits.numel()
        if self.sampled and len(self) - self.keyed >= self._chunk:
            self._process()

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits [n], labels [n], groups [n] or None) of the kept rows, n <= cap, in the
        order they arrived; every row when the epoch had at most cap rows."""
        if self.sampled:
            self._process()
            self._compact()
        scores, labels = self.scores.tensor(), self.labels.tensor()
        if scores is None or labels is None:
            raise ValueError("the epoch has no rows")
        return scores, labels, self.groups.tensor()

    def compute(self, metrics: Sequence[Metric] | None = None) -> dict[str, float]:
        """Each metric over the epoch: ROW_TERMS metrics over every row, the others over
        sample() (all rows below the cap)."""
        metrics = self.metrics if metrics is None else list(metrics)
        scores, labels, groups = self.sample()
        prob = torch.sigmoid(scores).cpu().numpy()
        g = None if groups is None else groups.cpu().numpy()
        out = compute_metrics(metrics, labels.cpu().numpy(), prob, g)
        for metric in metrics:
            if self.sampled and metric.fn in ROW_TERMS:
                out[metric.name] = float(self.sums[metric.name]) / self.rows
        return out

    # ----- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The rows and sampling state, for an exact resume (tensors copied)."""
        return {"rows": self.rows, "scores": self.scores.tensor(),
                "labels": self.labels.tensor(), "groups": self.groups.tensor(),
                "keyed": self.keyed, "keys": self.keys.tensor(), "threshold": self.threshold,
                "sums": {k: v.clone() for k, v in self.sums.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict() (of the same cap, seed and epoch)."""
        self.rows = int(state["rows"])
        for name in ("scores", "labels", "groups", "keys"):
            setattr(self, name, Column(state.get(name), limit=self._limit))
        self.keyed = int(state.get("keyed", 0))
        self.threshold = state.get("threshold")
        self.sums = {k: v.clone() for k, v in (state.get("sums") or {}).items()}

    # ----- internals ---------------------------------------------------------------------
    def _process(self) -> None:
        """Key, sum and filter the rows held since the last chunk (all rows, the first time
        the cap is passed); compact when more than 2 * cap rows are kept."""
        start, n = self.keyed, len(self) - self.keyed
        if n == 0:
            return
        scores, labels = self.scores.view()[start:], self.labels.view()[start:]  # [n]
        groups = self.groups.view()[start:] if self.groups else None  # [n]
        self._add_sums(scores, labels)
        keys = row_keys(self.seed, self.epoch, self.rows - n, n, groups)  # [n]
        if self.threshold is not None:
            enter = torch.from_numpy(np.flatnonzero(keys.numpy() < self.threshold))  # [k]
            keys = keys[enter]
            for column in self._columns():
                column.select(enter, start)
        self.keys.append(keys)
        self.keyed = len(self)
        assert self.cap is not None
        if self.keyed > 2 * self.cap:
            self._compact()

    def _compact(self) -> None:
        """Keep the cap held rows of smallest key, in arrival order (all rows are keyed)."""
        assert self.cap is not None and self.keyed == len(self)
        if len(self) <= self.cap:
            return
        keys = self.keys.view().numpy()
        # Held rows are in arrival order, so a stable sort breaks ties by the earlier row.
        chosen = np.sort(np.argsort(keys, kind="stable")[: self.cap])  # [cap]
        self.threshold = int(keys[chosen].max())
        index = torch.from_numpy(chosen)
        for column in (*self._columns(), self.keys):
            column.select(index)
        self.keyed = self.cap

    def _columns(self) -> list[Column]:
        return [self.scores, self.labels, *([self.groups] if self.groups else [])]

    def _add_sums(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        prob = torch.sigmoid(logits).numpy()  # [n] float32, as compute() scores
        y = labels.double().numpy()  # [n]
        for metric in self.metrics:
            terms = ROW_TERMS.get(metric.fn)
            if terms is None:
                continue
            total = torch.from_numpy(terms(y, prob)).sum()  # float64
            self.sums[metric.name] = (total if metric.name not in self.sums
                                      else self.sums[metric.name] + total)
