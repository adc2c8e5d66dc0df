"""Sequence masks and masked pooling of variable-length id lists."""

from __future__ import annotations

import torch

from dinrec.layers.attention import mask_scores


def sequence_mask(ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Valid positions of a padded id list: [B, T] bool.

    From the true lengths [B] when given (DeepCTR's length_name), else id != 0 (padding is 0).
    """
    if lengths is None:
        return ids != 0
    positions = torch.arange(ids.shape[1], device=ids.device)  # [T]
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def pool_sequence(
    emb: torch.Tensor,
    mask: torch.Tensor,
    combiner: str,
    weights: torch.Tensor | None = None,
    weight_norm: bool = True,
) -> torch.Tensor:
    """Pool [B, T, E] embeddings over the valid slots of mask [B, T] into [B, E].

    combiner: "sum", "mean" (over valid slots; an empty list gives 0) or "max" (an empty
    list gives 0). Optional weights [B, T] scale each slot first, softmax-normalised over
    valid slots when weight_norm.
    """
    if weights is not None:
        w = mask_scores(weights, mask, weight_normalization=weight_norm)
        emb = emb * w.unsqueeze(-1)
    m = mask.unsqueeze(-1).to(emb.dtype)  # [B, T, 1]
    if combiner == "max":
        filled = emb.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        pooled = filled.max(dim=1).values
        return torch.where(mask.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))
    total = (emb * m).sum(dim=1)  # [B, E]
    if combiner == "sum":
        return total
    if combiner == "mean":
        return total / m.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"unknown combiner {combiner!r}; valid: sum, mean, max")
