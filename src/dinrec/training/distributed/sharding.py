"""Sharded batch sources: each rank yields its share, every rank the same number of batches.

Three kinds, for three ways the data can be held:

- DistributedBatches: every rank holds all N rows in memory (as every rank holds a map-style
  Dataset under DistributedSampler) and yields a strided share of one global permutation per
  (seed, epoch), padded by wrapping to a multiple of the world size. With batch_size = B / W
  the union of the ranks' k-th batches is exactly the k-th batch of
  TensorBatches(batch_size=B, seed=seed), so DDP reproduces single-process training.
- ShardBatches: each rank holds only its own rows (e.g. a row range of a Parquet split);
  shuffled per (seed, epoch, rank), padded by wrapping to the largest shard's row count.
- AgreedBatches: a streaming loader that reads only its shard (ParquetBatchLoader with
  shard=(rank, world)); every epoch is cut to the fewest batches any rank has
  (all_reduce(MIN)), so no rank waits in a collective for a batch another never gets.

Sharded sources also count MBA's id frequencies over the whole dataset (their real rows,
summed over ranks) and give each yielded row's global id, so evaluation can drop padding.

Example:
    >>> train = DistributedBatches(features, labels, batch_size=256 // world, shuffle=True)
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from dinrec.training.batches import (
    Batch,
    InMemoryRows,
    TensorBatches,
    epoch_batches,
    epoch_permutation,
    take_rows,
)
from dinrec.training.distributed.launch import (
    all_gather_rows,
    all_reduce_int,
    all_reduce_sum_,
    current,
    get_rank,
    get_world_size,
)


def _wrap_to(order: torch.Tensor, length: int) -> torch.Tensor:
    """`order` extended by repeating it from the start until it has `length` entries."""
    if order.numel() == 0:
        raise ValueError("cannot pad an empty shard")
    reps = -(-length // order.numel())
    return order.repeat(reps)[:length]


def _frequencies(model: Any, batches: Iterable[tuple[Batch, torch.Tensor]]) -> dict[str, Any]:
    """count_frequencies over this rank's real rows, summed over ranks (float32 per table)."""
    from dinrec.training.regularization import count_frequencies

    counts = count_frequencies(model, batches)
    return {name: all_reduce_sum_(c.to(torch.float64)).to(torch.float32)
            for name, c in counts.items()}


class _IndexedBatches(InMemoryRows):
    """In-memory rows yielded in an order of local row indices that depends on the epoch."""

    def __init__(self, features: Batch, labels: torch.Tensor | None, batch_size: int,
                 shuffle: bool, seed: int) -> None:
        super().__init__(features, labels, batch_size, shuffle, seed)
        self.local_rows = int(next(iter(features.values())).shape[0])

    # subclasses: the local row index of each row yielded this epoch, and its global id
    def order(self) -> torch.Tensor:
        raise NotImplementedError

    def global_ids(self, local: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def real_rows(self) -> torch.Tensor:
        """Local indices of the rows that are this rank's own (no padding), for counting."""
        raise NotImplementedError

    @property
    def num_rows(self) -> int:
        """Rows this rank yields per epoch (padding included)."""
        return int(self.order().numel())

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def row_ids(self) -> np.ndarray:
        """Global row id of each row yielded this epoch, in order (for the evaluation gather)."""
        return self.global_ids(self.order()).numpy()

    def _take(self, index: torch.Tensor) -> tuple[Batch, torch.Tensor]:
        return take_rows(self.features, self.labels, index)

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]:
        for index in self.order().split(self.batch_size):
            yield self._take(index)

    def id_frequencies(self, model: Any) -> dict[str, torch.Tensor]:
        """MBA's n_j over the whole dataset: this rank's real rows counted, summed over ranks."""
        rows = self.real_rows()
        return _frequencies(model, (self._take(i) for i in rows.split(max(self.batch_size, 4096))))


class DistributedBatches(_IndexedBatches):
    """DistributedSampler over in-memory tensors: this rank's share of every global batch.

    Args:
        features: input name -> tensor with N rows (the whole dataset, on every rank).
        labels: [N] float32 (None for prediction).
        batch_size: rows per rank per step (the global batch is batch_size * world).
        shuffle: a new global permutation per (seed, epoch), as TensorBatches.
        seed: base seed of the permutation.
        rank, world_size: default from the process group.

    Rows are padded by wrapping (the first rows again) to a multiple of world_size, then
    rank r takes positions r, r + W, r + 2W, ...: every rank yields ceil(N / W) rows.
    """

    def __init__(
        self,
        features: Batch,
        labels: torch.Tensor | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__(features, labels, batch_size, shuffle, seed)
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")
        if self.local_rows == 0:
            raise ValueError("DistributedBatches needs at least one row")

    @classmethod
    def from_tensor_batches(
        cls, source: TensorBatches, rank: int | None = None, world_size: int | None = None
    ) -> DistributedBatches:
        """The sharded twin of a TensorBatches: the same global batches, split over ranks."""
        world = get_world_size() if world_size is None else world_size
        if source.batch_size % world:
            raise ValueError(f"batch_size {source.batch_size} is not a multiple of the world "
                             f"size {world}: each rank takes batch_size / world rows a step")
        return cls(source.features, source.labels, source.batch_size // world, source.shuffle,
                   source.seed, rank, world)

    def order(self) -> torch.Tensor:
        n, w = self.local_rows, self.world_size
        order = epoch_permutation(n, self.seed, self.epoch) if self.shuffle else torch.arange(n)
        return _wrap_to(order, -(-n // w) * w)[self.rank :: w]

    @property
    def num_rows(self) -> int:
        return -(-self.local_rows // self.world_size)

    def global_ids(self, local: torch.Tensor) -> torch.Tensor:
        return local  # every rank holds all rows: local index == global row id

    def real_rows(self) -> torch.Tensor:
        return torch.arange(self.rank, self.local_rows, self.world_size)


class ShardBatches(_IndexedBatches):
    """This rank's own rows (e.g. a row range of a split), padded to the largest shard.

    Args:
        features: input name -> tensor with this rank's n_r rows.
        labels: [n_r] float32.
        batch_size: rows per rank per step.
        shuffle: permute the shard's rows per (seed, epoch, rank).
        seed: base seed.
        row_ids: [n_r] int64 global id of each local row (for the evaluation gather); default
            rank-major numbering (rank 0's rows first), right for contiguous row ranges.

    Every rank yields max_r n_r rows per epoch: shorter shards wrap around their own order,
    so ranks step together. Construction is collective: call it on every rank.
    """

    def __init__(
        self,
        features: Batch,
        labels: torch.Tensor | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        row_ids: torch.Tensor | None = None,
    ) -> None:
        super().__init__(features, labels, batch_size, shuffle, seed)
        self.rank = get_rank()
        # Collective on every rank, so an empty shard fails on all ranks together.
        sizes = [int(n) for n in all_gather_rows(torch.tensor([self.local_rows]))]
        self.target_rows = max(sizes)
        if min(sizes) == 0:
            raise ValueError(f"a rank got no rows (rows per rank: {sizes}); use fewer ranks "
                             "or more data")
        if row_ids is None:
            row_ids = torch.arange(self.local_rows) + sum(sizes[: self.rank])
        if row_ids.shape != (self.local_rows,):
            raise ValueError(f"row_ids must have shape ({self.local_rows},), got "
                             f"{tuple(row_ids.shape)}")
        self._row_ids = row_ids.to(torch.int64)

    def order(self) -> torch.Tensor:
        n = self.local_rows
        if self.shuffle:
            gen = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + self.epoch) * 1_009 + self.rank)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        return _wrap_to(order, self.target_rows)

    @property
    def num_rows(self) -> int:
        return self.target_rows

    def global_ids(self, local: torch.Tensor) -> torch.Tensor:
        return self._row_ids[local]

    def real_rows(self) -> torch.Tensor:
        return torch.arange(self.local_rows)


class AgreedBatches:
    """A streaming source cut, each epoch, to the fewest batches any rank yields.

    Args:
        source: this rank's shard, e.g. ParquetBatchLoader(path, B, shard=(rank, world)).

    With len(source) known, one all_reduce(MIN) per epoch; otherwise one per step (a flag:
    does every rank still have a batch?). Prefer drop_last=True on the loader, so every
    rank's batches are full and weigh the same in DDP's gradient average.
    """

    def __init__(self, source: Iterable[tuple[Batch, torch.Tensor]]) -> None:
        self.source = source
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        epoch_batches(self.source, epoch)

    def _local_len(self) -> int | None:
        try:
            return len(self.source)  # type: ignore[arg-type]
        except TypeError:
            return None

    def __len__(self) -> int:
        n = self._local_len()
        if n is None:
            raise TypeError("the wrapped source has no len()")
        return all_reduce_int(n, "min")

    @property
    def num_rows(self) -> int | None:
        n = getattr(self.source, "num_rows", None)
        return int(n) if isinstance(n, int) else None

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]:
        known = self._local_len()
        steps = all_reduce_int(known, "min") if known is not None else None
        it = iter(self.source)
        done = 0
        try:
            while steps is None or done < steps:
                item = next(it, None)
                if steps is None and all_reduce_int(int(item is not None), "min") == 0:
                    break
                if item is None:
                    raise RuntimeError(f"rank {current().rank}: the source yielded fewer "
                                       f"batches ({done}) than its len() promised")
                yield item
                done += 1
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()  # release the loader's window and open file early

    def id_frequencies(self, model: Any) -> dict[str, torch.Tensor]:
        """MBA's n_j over the whole dataset: this shard entirely (no cut), summed over ranks."""
        return _frequencies(model, epoch_batches(self.source, 0))


def shard_source(source: Any) -> Any:
    """The sharded twin of a batch source for this process's rank (itself when not distributed).

    TensorBatches -> DistributedBatches (batch_size / world per rank, the same global
    batches); any other source is taken as already this rank's shard (e.g. a
    ParquetBatchLoader built with shard=(rank, world)) and wrapped in AgreedBatches.
    """
    if get_world_size() == 1:
        return source
    if isinstance(source, _IndexedBatches | AgreedBatches):
        return source
    if isinstance(source, TensorBatches):
        return DistributedBatches.from_tensor_batches(source)
    return AgreedBatches(source)
