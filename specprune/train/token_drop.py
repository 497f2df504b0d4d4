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
FastV and random dropping gain from it as much as SpecPrune does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from torch import nn

from specprune.model.modeling_vla import SequenceLayout
from specprune.prune.baselines import RandomDropHook
from specprune.prune.decoder import DecoderState, LayerHook

#: separates the token-drop draws from every other stream seeded by the run's seed
_STREAM = 0x70D8


@dataclass(frozen=True)
class TokenDrop:
    """The augmentation's settings (TrainConfig.token_drop*; validated there)."""

    probability: float = 0.0
    keep_min: float = 0.15
    layers: Tuple[int, ...] = (2,)
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return self.probability > 0

    def draw(self, step: int, num_visual: int) -> Optional[Tuple[int, int, Tuple[int, ...]]]:
        """(layer, kept count, seed words of the subset) of training step ``step``, or
        None when the step keeps every token."""
        if not self.enabled:
            return None
        words = (self.seed, _STREAM, step)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))
        if rng.random() >= self.probability:
            return None
        layer = int(self.layers[int(rng.integers(len(self.layers)))])
        keep = rng.uniform(self.keep_min, 1.0)
        return layer, max(1, int(round(keep * num_visual))), words

    def hook(self, step: int, layout: SequenceLayout,
             inner: Optional[LayerHook] = None) -> Optional[LayerHook]:
        """The decoder hook of step ``step``: ``inner`` (if any) sees each layer's input
        first, then the drop applies; None when nothing drops and there is no ``inner``."""
        drawn = self.draw(step, layout.num_visual)
        if drawn is None:
            return inner
        layer, budget, words = drawn
        return _Chain((inner, RandomDropHook(layout, layer, budget, words)))


class _Chain:
    """Several decoder hooks before each layer, in order."""

    def __init__(self, hooks: Sequence[Optional[LayerHook]]) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        for hook in self.hooks:
            hook.before_layer(index, layer, state)
