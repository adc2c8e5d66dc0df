"""Batch sources: in-memory tensors batched by indexing, or any streaming loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch

Batch = dict[str, torch.Tensor]


def epoch_permutation(num_rows: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of a shuffled epoch ([num_rows] int64), a function of (seed, epoch) only:
    TensorBatches and its sharded twin DistributedBatches must draw the same one."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_rows, generator=gen)


def take_rows(
    features: Batch, labels: torch.Tensor | None, index: torch.Tensor | slice
) -> tuple[Batch, torch.Tensor]:
    """Rows `index` of every feature and of the labels, as a batch source yields them: an
    empty label tensor when there are none (prediction), so every batch is a pair."""
    feats = {k: v[index] for k, v in features.items()}
    return feats, labels[index] if labels is not None else torch.empty(0)


@runtime_checkable
class BatchSource(Protocol):
    """Anything fit/evaluate can iterate: yields (features, labels [B] float32) per batch.

    A streaming loader (dinrec.data.loader.ParquetBatchLoader) satisfies it; set_epoch, when
    present, reseeds its shuffle as DistributedSampler.set_epoch does.
    """

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]: ...


class InMemoryRows:
    """Features and labels held as tensors, the batching settings, and the epoch that orders
    the rows: what TensorBatches and the sharded in-memory sources of distributed.sharding
    (DistributedBatches, ShardBatches) hold alike. Subclasses say which rows each epoch
    yields, in what order."""

    def __init__(self, features: Batch, labels: torch.Tensor | None, batch_size: int,
                 shuffle: bool, seed: int) -> None:
        # bool is an int subclass: batch_size=True is a mistake, not one row per batch.
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.features = features
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for an epoch (as DistributedSampler.set_epoch)."""
        self.epoch = epoch


class TensorBatches(InMemoryRows):
    """Tensors prepared once per fit, cut into batches by indexing (no per-sample Python).

    Args:
        features: input name -> tensor with N rows.
        labels: [N] float32, or None for prediction.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: permute rows each epoch, seeded by (seed, epoch).
        seed: base seed of the permutation.
    """

    def __init__(
        self,
        features: Batch,
        labels: torch.Tensor | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(features, labels, batch_size, shuffle, seed)
        first = next(iter(features.values()))
        self.num_rows = int(first.shape[0])

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def split(self, fraction: float) -> tuple[TensorBatches, TensorBatches]:
        """(head, tail): the last `fraction` of rows, before any shuffling (as Keras)."""
        cut = int(self.num_rows * (1.0 - fraction))
        if cut <= 0 or cut >= self.num_rows:
            raise ValueError(
                f"validation_split={fraction} leaves no rows for training or validation "
                f"({self.num_rows} rows)"
            )

        def part(sl: slice) -> TensorBatches:
            feats = {k: v[sl] for k, v in self.features.items()}
            labels = None if self.labels is None else self.labels[sl]
            return TensorBatches(feats, labels, self.batch_size, self.shuffle, self.seed)

        return part(slice(0, cut)), part(slice(cut, None))

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]:
        n, bs = self.num_rows, self.batch_size
        # Unshuffled batches are slices (views, no copy); shuffled ones gather by index.
        order = epoch_permutation(n, self.seed, self.epoch) if self.shuffle else None
        for start in range(0, n, bs):
            index = slice(start, start + bs) if order is None else order[start : start + bs]
            yield take_rows(self.features, self.labels, index)


def module_device(model: torch.nn.Module) -> torch.device:
    """Where a model's parameters live (the batches it is fed must be there too)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(
    features: Batch, labels: torch.Tensor, device: torch.device
) -> tuple[Batch, torch.Tensor]:
    """A batch on `device`; tensors already there are returned as they are (no copy), so on
    CPU this costs a dict of the same tensors."""
    if labels.device == device and all(v.device == device for v in features.values()):
        return features, labels
    # non_blocking: a pinned host batch copies while the previous step still runs.
    return ({k: v.to(device, non_blocking=True) for k, v in features.items()},
            labels.to(device, non_blocking=True))


def epoch_batches(
    source: Iterable[tuple[Batch, torch.Tensor]], epoch: int
) -> Iterable[tuple[Batch, torch.Tensor]]:
    """Reseed the source for an epoch (when it supports set_epoch) and return it."""
    set_epoch = getattr(source, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    return source


def source_rows(source: object) -> int | None:
    """Rows per epoch when the source knows it (for progress bars), else None."""
    n = getattr(source, "num_rows", None)
    return int(n) if isinstance(n, int) else None
