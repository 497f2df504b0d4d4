"""Pure token-selection functions over the visual-token index space.

Visual tokens are numbered 0..V-1 (view v owns v*P .. (v+1)*P-1). Score vectors are
(V,) with -inf for tokens that are no longer present; sets are (V,) bool masks. Layer
pruning works on the (n,) tokens present at its layer (``rank_weights``, ``drop_lowest``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch


def topk_per_view(scores: torch.Tensor, per_view: int, ks: Sequence[int]) -> torch.Tensor:
    """Mask of the top-k present tokens of each view (k = ks[view])."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    for view, k in enumerate(ks):
        part = scores[view * per_view:(view + 1) * per_view]
        k = min(int(k), int(torch.isfinite(part).sum()))
        if k > 0:
            mask[view * per_view + torch.topk(part, k).indices] = True
    return mask


def indices_to_mask(indices: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool, device=indices.device)
    mask[indices] = True
    return mask


def round_up_to_bucket(mask: torch.Tensor, ranking: torch.Tensor, bucket: int) -> torch.Tensor:
    """Add the next-best present tokens (by ``ranking``) until the count is a multiple of
    ``bucket`` (or every present token is kept)."""
    if bucket <= 0:
        return mask
    count = int(mask.sum())
    available = torch.isfinite(ranking) & ~mask
    extra = min(math.ceil(count / bucket) * bucket - count, int(available.sum()))
    if extra <= 0:
        return mask
    candidates = torch.where(available, ranking, torch.full_like(ranking, -math.inf))
    mask = mask.clone()
    mask[torch.topk(candidates, extra).indices] = True
    return mask


def rank_weights(scores: torch.Tensor, steepness: float) -> torch.Tensor:
    """Normalised sigmoid(-k * (rank/(n-1) - 1/2)) of (n,) scores of present tokens
    (rank 0: the highest score)."""
    n = scores.numel()
    if n == 0:
        return scores.clone()
    ranks = torch.arange(n, dtype=scores.dtype, device=scores.device) / max(n - 1, 1)
    weights = torch.empty_like(scores)
    weights[torch.argsort(scores, descending=True)] = torch.sigmoid(-steepness * (ranks - 0.5))
    return weights / weights.sum()


def drop_lowest(ema: torch.Tensor, ratio: float, floor: int) -> Optional[torch.Tensor]:
    """Which of (n,) present tokens to keep after dropping ``ratio`` of them with the lowest
    EMA score, never going below ``floor`` tokens; None when nothing is dropped."""
    n = ema.numel()
    drop = min(int(math.floor(ratio * n)), max(n - floor, 0))
    if drop <= 0:
        return None
    keep = torch.ones(n, dtype=torch.bool, device=ema.device)
    keep[torch.topk(ema, drop, largest=False).indices] = False
    return keep


def scatter_scores(values: torch.Tensor, visual_idx: torch.Tensor, size: int,
                   fill: Optional[float] = None) -> torch.Tensor:
    """(n,) scores of the present visual tokens -> (V,) vector, ``fill`` (-inf) elsewhere."""
    out = torch.full((size,), -math.inf if fill is None else fill,
                     dtype=values.dtype, device=values.device)
    out[visual_idx] = values
    return out
