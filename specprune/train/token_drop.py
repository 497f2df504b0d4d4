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
the two layers before the drop, layers 0 and 1 for a drop before layer 2, as SpecPrune
with ``PruneConfig.local_first_layer`` = layer - 2): training for SpecPrune's own
selection, the strongest help for the pruner, and labelled so.
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
from specprune.prune.pruning_hooks import VisualScorer
from specprune.prune.scoring import column_scores
from specprune.prune.selection import topk_per_view

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


class ScoredDropHook(VisualScorer):
    """Before ``layer`` (>= 2) keep in each sample, per view, the ``per_view`` visual tokens
    with the highest Eq. 1 score (the task-text rows' attention, mean over heads and rows)
    averaged over the two layers before it (0 and 1 before layer 2: SpecPrune's V_local
    with ``local_first_layer`` = layer - 2; ``topk_per_view``, as it ranks), scored from the
    keys those layers then run with; the others leave the sequence. Samples keep different
    tokens, the same count (``keep_present`` / ``DecoderState.select`` per sample)."""

    def __init__(self, layout: SequenceLayout, layer: int, per_view: int) -> None:
        if layer < 2:
            raise ValueError(f"a scored drop needs the scores of two layers before it: layer "
                             f"{layer}")
        super().__init__(layout, layout.query_positions)
        self.layer = layer
        self.per_view = min(per_view, layout.patches_per_view)
        self._scores: List[torch.Tensor] = []  # (B, V) of layers layer - 2 and layer - 1
        self.kept: Optional[torch.Tensor] = None  # (B, n) visual ids kept, increasing

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if self.layer - 2 <= index < self.layer:
            self._scores.append(self._eq1(layer, state))
        if index != self.layer:
            return
        lay = self.layout
        if state.hidden.shape[1] != lay.length:
            raise ValueError("a scored drop must be the pass's only drop")
        ks = [self.per_view] * lay.num_views
        self.kept = torch.stack([torch.nonzero(topk_per_view(s, lay.patches_per_view, ks))[:, 0]
                                 for s in torch.stack(self._scores).mean(0)])
        self.keep_present(state, self.kept)

    def _eq1(self, layer: nn.Module, state: DecoderState) -> torch.Tensor:
        """(B, V) Eq. 1 scores of the layer's input, without a gradient (a selection)."""
        state.layer_input(layer)  # the layer's own input, with its gradient, for its pass
        with torch.no_grad():
            return column_scores(self.query_attention(layer, state), self.present(state))


class _Chain:
    """Several decoder hooks before each layer, in order."""

    def __init__(self, hooks: Sequence[Optional[LayerHook]]) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        for hook in self.hooks:
            hook.before_layer(index, layer, state)
