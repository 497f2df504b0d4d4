"""Pruning baselines that SpecPrune must beat: random token dropping (the floor) and an
even grid.

FastV (``pruning_hooks.FastVHook``) keeps the visual tokens the last prompt token attends to
most at layer 2. ``RandomDropHook`` keeps a uniformly random subset of the same size at the
same layer, drawn from a generator seeded by ``seed_words`` (e.g. the episode's seed and the
step's index), so the same episode drops the same tokens in any process. A task on which
random dropping succeeds as often as the unpruned model cannot tell a good selection from
none. ``GridDropHook`` keeps the same count spread over every view at an even stride, the
same tokens on every step: no scores, but no part of the scene left far from a kept token.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import nn

from specprune.model.modeling_vla import SequenceLayout
from specprune.prune.decoder import DecoderState
from specprune.prune.pruning_hooks import VisualScorer
from specprune.prune.selection import even_grid


def random_visual_subset(num_visual: int, budget: int, seed_words: Sequence[int]) -> np.ndarray:
    """``min(budget, num_visual)`` distinct visual-token indices (sorted), uniformly at
    random from numpy's PCG64 seeded with ``seed_words`` (stable across numpy versions
    and machines)."""
    if budget < 0 or num_visual < 0:
        raise ValueError(f"need budget >= 0 and num_visual >= 0, got {budget}, {num_visual}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(seed_words))))
    return np.sort(rng.choice(num_visual, size=min(budget, num_visual), replace=False))


class RandomDropHook(VisualScorer):
    """Before ``layer_index`` keep ``budget`` visual tokens drawn uniformly at random over
    all views together (FastV's place and count, no scores)."""

    def __init__(self, layout: SequenceLayout, layer_index: int, budget: int,
                 seed_words: Sequence[int]) -> None:
        super().__init__(layout, ())
        self.layer_index, self.budget = layer_index, budget
        self.kept = random_visual_subset(layout.num_visual, budget, seed_words)

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index != self.layer_index:
            return
        keep = torch.zeros(self.num_visual, dtype=torch.bool, device=state.positions.device)
        keep[torch.as_tensor(self.kept, dtype=torch.long, device=keep.device)] = True
        self.keep_visual(state, keep)
        self.kept_mask = keep


def grid_counts(budget: int, views: int, per_view: int) -> Tuple[int, ...]:
    """``budget`` visual tokens split over ``views`` views as evenly as it goes (the first
    views take the remainder), at most ``per_view`` each."""
    if budget < 0:
        raise ValueError(f"need budget >= 0, got {budget}")
    base, extra = divmod(budget, views)
    return tuple(min(base + (v < extra), per_view) for v in range(views))


class GridDropHook(VisualScorer):
    """Before ``layer_index`` keep ``budget`` visual tokens, each view's share at an even
    stride over it (``selection.even_grid``; FastV's place and count, no scores)."""

    def __init__(self, layout: SequenceLayout, layer_index: int, budget: int) -> None:
        super().__init__(layout, ())
        self.layer_index = layer_index
        self.counts = grid_counts(budget, layout.num_views, layout.patches_per_view)

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index != self.layer_index:
            return
        keep = even_grid(self.layout.patches_per_view, self.counts, state.positions.device)
        self.keep_visual(state, keep)
        self.kept_mask = keep
