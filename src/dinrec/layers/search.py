"""Two-stage attention over long histories, in the style of SIM (Pi et al., CIKM 2020).

A first, cheap stage picks at most k behaviors per sample; the activation unit (the costly
second stage) then runs on those only. Both stages are expressed as a narrower [B, T] mask,
so packing, Dice's statistics over valid rows and the zero weight of everything else hold
unchanged for the behaviors left out.

* ``topk`` (soft search): the k behaviors whose concatenated embedding has the largest inner
  product with the candidate's, under no_grad (the choice is discrete; the chosen behaviors
  get their gradients through the attention that follows).
* ``category`` (hard search): the behaviors whose id in one feature (e.g. cate_id) equals the
  candidate's; the k latest of them (the highest positions: histories are oldest first).

Example:
    >>> mask = torch.tensor([[True, True, True, False]])
    >>> topk_by_similarity(mask, torch.tensor([[0.1, 0.9, 0.5, 9.0]]), k=2).tolist()
    [[False, True, True, False]]
    >>> latest_matches(mask, torch.tensor([[7, 3, 7, 7]]), torch.tensor([7]), k=1).tolist()
    [[False, False, True, False]]
"""

from __future__ import annotations

import torch

SEARCH_MODES = ("topk", "category")


def topk_by_similarity(mask: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k valid positions with the largest scores per row (all of them when fewer).

    Args:
        mask: [B, T] bool, True = valid behavior.
        scores: [B, T] float, the first stage's score of each behavior.
        k: behaviors kept per row, >= 1.

    Returns:
        [B, T] bool, a subset of mask with min(k, valid) True per row.
    """
    # No branch on T: an exported serving graph has a dynamic T that may be on either side
    # of k (sym_min stays symbolic there; in eager mode it is min).
    width = torch.sym_min(k, mask.shape[1])
    filled = scores.masked_fill(~mask, float("-inf"))  # padding is never among the top k
    top = filled.topk(width, dim=1).indices  # [B, min(k, T)]
    chosen = torch.zeros_like(mask).scatter(1, top, True)
    return chosen & mask  # rows with fewer than k valid picked some padding: drop it


def latest_matches(
    mask: torch.Tensor, hist_ids: torch.Tensor, cand_ids: torch.Tensor, k: int
) -> torch.Tensor:
    """Valid positions whose id equals the candidate's; the k latest when there are more.

    Args:
        mask: [B, T] bool, True = valid behavior.
        hist_ids: [B, T] int64 ids of the behaviors in the matched feature.
        cand_ids: [B] int64 the candidate's id in that feature.
        k: behaviors kept per row, >= 1.

    Returns:
        [B, T] bool; a row with no match attends to nothing (its interest vector is 0).
    """
    match = mask & (hist_ids == cand_ids.unsqueeze(1))  # [B, T]
    positions = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32)
    return topk_by_similarity(match, positions.expand(mask.shape), k)
