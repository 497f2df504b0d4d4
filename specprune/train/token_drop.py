"""Token-drop augmentation: training passes that lose random visual tokens part-way up.

Help for the pruner, and labelled as such wherever a policy trained with it is reported.
A pretrained 7B VLA reads the scene redundantly, so dropping half its visual tokens after
layer 2 barely moves its actions (the paper's premise); a small policy trained from
scratch has no such slack: on the tabletop suites even *random* dropping of 55 % of the
tokens at layer 2 costs 11-15 points (README, issue #19). With ``probability`` p a
training step runs its decoder pass as a pruned pass does: before one layer drawn from
``layers``, every visual token but a uniformly random ``keep`` share of them (keep drawn
uniformly from [keep_min, 1]) leaves the sequence, the kept ones at their original
positions (``DecoderState.select``, the pruned pass's own mechanism). The same subset
applies to every sample of the step's batch; the draw depends only on (seed, step), so
a resumed run drops exactly the tokens an uninterrupted one would.

The tokens are random, not SpecPrune's: the augmentation teaches no pruner's ranking, so
FastV and random dropping gain from it as much as SpecPrune does. With ``scored`` s > 0, a
share s of the drop steps instead keeps in every sample the tokens SpecPrune's V_local
would (``ScoredDropHook``: per view the top of the task-text rows' Eq. 1 attention at
layers 0 and 1): training for SpecPrune's own selection, the strongest help for the
pruner, and labelled so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from specprune.model.modeling_vla import SequenceLayout
from specprune.prune.baselines import RandomDropHook
from specprune.prune.decoder import DecoderState, LayerHook
from specprune.prune.scoring import batched_query_attention, column_scores

#: separates the token-drop draws from every other stream seeded by the run's seed
_STREAM = 0x70D8


@dataclass(frozen=True)
class TokenDrop:
    """The augmentation's settings (TrainConfig.token_drop*; validated there)."""

    probability: float = 0.0
    keep_min: float = 0.15
    layers: Tuple[int, ...] = (2,)
    seed: int = 0
    scored: float = 0.0  # share of the drop steps that keep SpecPrune's V_local instead

    @property
    def enabled(self) -> bool:
        return self.probability > 0

    def draw(self, step: int, num_visual: int) -> Optional[Drawn]:
        """What training step ``step`` drops, or None when it keeps every token."""
        if not self.enabled:
            return None
        words = (self.seed, _STREAM, step)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))
        if rng.random() >= self.probability:
            return None
        layer = int(self.layers[int(rng.integers(len(self.layers)))])
        keep = rng.uniform(self.keep_min, 1.0)
        scored = bool(self.scored > 0 and rng.random() < self.scored)
        return Drawn(layer, max(1, int(round(keep * num_visual))), words, scored)

    def hook(self, step: int, layout: SequenceLayout,
             inner: Optional[LayerHook] = None) -> Optional[LayerHook]:
        """The decoder hook of step ``step``: ``inner`` (if any) sees each layer's input
        first, then the drop applies; None when nothing drops and there is no ``inner``."""
        drawn = self.draw(step, layout.num_visual)
        if drawn is None:
            return inner
        if drawn.scored:
            per_view = max(1, drawn.budget // layout.num_views)
            return _Chain((inner, ScoredDropHook(layout, drawn.layer, per_view)))
        return _Chain((inner, RandomDropHook(layout, drawn.layer, drawn.budget, drawn.words)))


@dataclass(frozen=True)
class Drawn:
    """One drop step: before ``layer`` keep ``budget`` visual tokens, at random (drawn from
    ``words``) or, ``scored``, SpecPrune's V_local (budget / views per view)."""

    layer: int
    budget: int
    words: Tuple[int, ...]
    scored: bool = False


class ScoredDropHook:
    """Before ``layer`` (>= 2) keep in each sample, per view, the ``per_view`` visual tokens
    with the highest Eq. 1 score (the task-text rows' attention, mean over heads and rows)
    averaged over layers 0 and 1, scored on the inputs of those layers as SpecPrune scores
    them; the others leave the sequence. Samples keep different tokens (the same count):
    the state's positions become (B, T') and its cos / sin (B, T', hd)."""

    def __init__(self, layout: SequenceLayout, layer: int, per_view: int) -> None:
        if layer < 2:
            raise ValueError(f"a scored drop needs the scores of layers 0 and 1: layer {layer}")
        self.layout, self.layer = layout, layer
        self.per_view = min(per_view, layout.patches_per_view)
        self._scores: List[torch.Tensor] = []  # (B, V) of layers 0 and 1
        self.kept: Optional[torch.Tensor] = None  # (B, n) visual ids kept, increasing

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index < 2:
            self._scores.append(self._eq1(layer, state))
        if index != self.layer:
            return
        if state.hidden.shape[1] != self.layout.length or state.positions.dim() != 1:
            raise ValueError("a scored drop must be the pass's only drop")
        lay = self.layout
        grid = torch.stack(self._scores).mean(0).view(-1, lay.num_views, lay.patches_per_view)
        top = torch.topk(grid, self.per_view, dim=2).indices  # (B, views, k)
        offsets = torch.arange(lay.num_views, device=top.device).view(1, -1, 1)
        self.kept = torch.sort((top + offsets * lay.patches_per_view).flatten(1)).values
        b, t = state.hidden.shape[:2]
        v0, device = lay.visual_start, state.hidden.device
        idx = torch.cat((torch.arange(v0, device=device).expand(b, -1), self.kept + v0,
                         torch.arange(v0 + lay.num_visual, t, device=device).expand(b, -1)), 1)

        def gather(x: torch.Tensor) -> torch.Tensor:  # (1 or B, T, d) -> (B, T', d)
            x = x.expand(b, -1, -1)
            return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        state.hidden, state.cos, state.sin = gather(state.hidden), gather(state.cos), \
            gather(state.sin)
        state.positions = state.positions[idx]
        state.pending = None

    def _eq1(self, layer: nn.Module, state: DecoderState) -> torch.Tensor:
        """(B, V) Eq. 1 scores of the layer's input, without a gradient (a selection)."""
        lay = self.layout
        with torch.no_grad():
            rows = torch.tensor(lay.query_positions, device=state.hidden.device)
            probs = batched_query_attention(layer, state.hidden, state.cos, state.sin, rows)
            return column_scores(probs, slice(lay.visual_start,
                                              lay.visual_start + lay.num_visual))


class _Chain:
    """Several decoder hooks before each layer, in order."""

    def __init__(self, hooks: Sequence[Optional[LayerHook]]) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        for hook in self.hooks:
            hook.before_layer(index, layer, state)
