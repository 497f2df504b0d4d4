"""Pure token-selection functions over the visual-token index space.

Visual tokens are numbered 0..V-1 (view v owns v*P .. (v+1)*P-1). Score vectors are
(V,) with -inf for tokens that are no longer present; sets are (V,) bool masks. Layer
pruning works on the (n,) tokens present at its layer (``rank_weights``, ``keep_highest``).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple

import torch


@functools.lru_cache(maxsize=64)
def _rank_below(ks: Tuple[int, ...], width: int, device: torch.device) -> torch.Tensor:
    """(views, width) mask: rank j of view v is below ks[v]."""
    with torch.inference_mode():  # cached across passes: never part of a graph
        return (torch.arange(width, device=device)[None]
                < torch.tensor(ks, device=device)[:, None])


def topk_per_view(scores: torch.Tensor, per_view: int, ks: Sequence[int]) -> torch.Tensor:
    """Mask of the top-k present (finite) tokens of each view (k = ks[view]): one top-k
    over the (views, per_view) grid of every view at once."""
    grid = scores.view(len(ks), per_view)
    ks = tuple(min(max(int(k), 0), per_view) for k in ks)
    mask = torch.zeros_like(grid, dtype=torch.bool)
    width = max(ks, default=0)
    if width > 0:
        values, idx = torch.topk(grid, width, dim=1)
        take = torch.isfinite(values)
        if min(ks) < width:
            take &= _rank_below(ks, width, scores.device)
        mask.scatter_(1, idx, take)
    return mask.view(-1)


@functools.lru_cache(maxsize=64)
def even_grid(per_view: int, ks: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(V,) mask of ``ks[v]`` patches of each view spread over it at an even stride (raster
    order, the first and last patch included): the tokens that keep every part of the
    scene in view."""
    with torch.inference_mode():  # cached across passes: never part of a graph
        mask = torch.zeros(len(ks), per_view, dtype=torch.bool, device=device)
        for view, k in enumerate(ks):
            k = min(max(int(k), 0), per_view)
            if k:
                mask[view, torch.linspace(0, per_view - 1, k, device=device).round().long()] = True
        return mask.view(-1)


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


@functools.lru_cache(maxsize=256)
def _rank_profile(n: int, steepness: float, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """The normalised weights of ranks 0..n-1 (the same for every layer with n tokens)."""
    with torch.inference_mode():  # cached across passes: never part of a graph
        ranks = torch.arange(n, dtype=dtype, device=device) / max(n - 1, 1)
        weights = torch.sigmoid(-steepness * (ranks - 0.5))
        return weights / weights.sum()


def rank_weights(scores: torch.Tensor, steepness: float) -> torch.Tensor:
    """Normalised sigmoid(-k * (rank/(n-1) - 1/2)) of (n,) scores of present tokens
    (rank 0: the highest score)."""
    n = scores.numel()
    if n == 0:
        return scores.clone()
    weights = torch.empty_like(scores)
    weights[torch.argsort(scores, descending=True)] = _rank_profile(
        n, float(steepness), scores.dtype, scores.device)
    return weights


def keep_highest(ema: torch.Tensor, ratio: float, floor: int) -> Optional[torch.Tensor]:
    """Increasing indices of the (n,) present tokens kept after dropping ``ratio`` of them
    with the lowest EMA score, never going below ``floor`` tokens; None when nothing is
    dropped."""
    n = ema.numel()
    drop = min(int(math.floor(ratio * n)), max(n - floor, 0))
    if drop <= 0:
        return None
    return torch.sort(torch.topk(ema, n - drop).indices).values


def scatter_scores(values: torch.Tensor, visual_idx: torch.Tensor, size: int,
                   fill: Optional[float] = None) -> torch.Tensor:
    """(n,) scores of the present visual tokens -> (V,) vector, ``fill`` (-inf) elsewhere."""
    out = torch.full((size,), -math.inf if fill is None else fill,
                     dtype=values.dtype, device=values.device)
    out[visual_idx] = values
    return out
