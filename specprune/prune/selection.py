"""Pure token-selection functions over the visual-token index space.

Visual tokens are numbered 0..V-1 (view v owns v*P .. (v+1)*P-1). Score vectors are
(V,) with -inf for tokens that are no longer present; sets are (V,) bool masks.
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
    """Normalised sigmoid(-k * (rank/n - 1/2)) over present tokens (0 elsewhere)."""
    present = torch.isfinite(scores)
    n = int(present.sum())
    weights = torch.zeros_like(scores)
    if n == 0:
        return weights
    order = torch.argsort(torch.where(present, scores, -math.inf), descending=True)[:n]
    ranks = torch.arange(n, dtype=scores.dtype, device=scores.device) / max(n - 1, 1)
    weights[order] = torch.sigmoid(-steepness * (ranks - 0.5))
    return weights / weights.sum()


def layer_drop_mask(ema: torch.Tensor, present: torch.Tensor, ratio: float,
                    floor: int) -> torch.Tensor:
    """Tokens to keep after dropping ``ratio`` of the present ones with the lowest EMA
    score, never going below ``floor`` present tokens."""
    n = int(present.sum())
    drop = min(int(math.floor(ratio * n)), max(n - floor, 0))
    if drop <= 0:
        return present
    masked = torch.where(present, ema, torch.full_like(ema, math.inf))
    keep = present.clone()
    keep[torch.topk(masked, drop, largest=False).indices] = False
    return keep


def scatter_scores(values: torch.Tensor, visual_idx: torch.Tensor, size: int,
                   fill: Optional[float] = None) -> torch.Tensor:
    """(n,) scores of the present visual tokens -> (V,) vector, ``fill`` (-inf) elsewhere."""
    out = torch.full((size,), -math.inf if fill is None else fill,
                     dtype=values.dtype, device=values.device)
    out[visual_idx] = values
    return out
