"""Batch sources: in-memory tensors batched by indexing, or any streaming loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch

Batch = dict[str, torch.Tensor]


@runtime_checkable
class BatchSource(Protocol):
    """Anything fit/evaluate can iterate: yields (features, labels [B] float32) per batch.

    A streaming loader (dinrec.data.loader.ParquetBatchLoader) satisfies it; set_epoch, when
    present, reseeds its shuffle as DistributedSampler.set_epoch does.
    """

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]: ...


class TensorBatches:
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
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.features = features
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        first = next(iter(features.values()))
        self.num_rows = int(first.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def take(self, index: torch.Tensor) -> tuple[Batch, torch.Tensor | None]:
        feats = {k: v[index] for k, v in self.features.items()}
        return feats, None if self.labels is None else self.labels[index]

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
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order: torch.Tensor | None = torch.randperm(n, generator=gen)
        else:
            order = None
        for start in range(0, n, bs):
            if order is None:
                sl = slice(start, start + bs)
                feats = {k: v[sl] for k, v in self.features.items()}
                labels = self.labels[sl] if self.labels is not None else torch.empty(0)
            else:
                idx = order[start : start + bs]
                feats = {k: v[idx] for k, v in self.features.items()}
                labels = self.labels[idx] if self.labels is not None else torch.empty(0)
            yield feats, labels


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
