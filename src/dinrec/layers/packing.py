"""Packing padded behavior lists: only the valid positions go through the activation unit.

A batch of histories [B, T] is mostly padding for short-history users (ml100k: 28% of the
slots in training). Packing gathers the N valid positions once, so the activation unit's
MLP, the embedding lookups of the behaviors and their backward run on [N, ...] rows, and
Dice's statistics over the packed rows are exactly its masked statistics (no mask needed).

Example:
    >>> mask = torch.tensor([[True, True, False], [True, False, False]])
    >>> packed = pack(mask)
    >>> packed.positions.tolist(), packed.rows.tolist()
    ([0, 1, 3], [0, 0, 1])
    >>> packed.unpack(torch.tensor([1.0, 2.0, 3.0])).tolist()
    [[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Packed:
    """The valid positions of a [B, T] mask, in row-major order.

    positions: [N] flat indices into B * T; rows: [N] the batch row of each position.
    """

    mask: torch.Tensor
    positions: torch.Tensor
    rows: torch.Tensor

    @property
    def batch(self) -> int:
        return int(self.mask.shape[0])

    def gather(self, padded: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] -> [N, ...]: the valid positions of a padded tensor."""
        flat = padded.reshape(-1, *padded.shape[2:])  # [B * T, ...]
        return flat.index_select(0, self.positions)

    def unpack(self, values: torch.Tensor) -> torch.Tensor:
        """[N] -> [B, T] with exactly 0 at padded positions (and no gradient there)."""
        out = values.new_zeros(self.mask.numel())
        return out.index_put((self.positions,), values).reshape(self.mask.shape)

    def sum_rows(self, values: torch.Tensor) -> torch.Tensor:
        """[N, E] -> [B, E]: per batch row, the sum of its positions' values."""
        out = values.new_zeros(self.batch, values.shape[1])
        return out.index_add(0, self.rows, values)


def pack(mask: torch.Tensor) -> Packed:
    """Pack a [B, T] bool mask (True = valid)."""
    positions = mask.reshape(-1).nonzero().squeeze(1)  # [N]
    rows = torch.div(positions, mask.shape[1], rounding_mode="floor")  # [N]
    return Packed(mask, positions, rows)
