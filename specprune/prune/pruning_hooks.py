"""Decoder hooks: SpecPrune (static + dynamic), the FastV baseline, and a score probe.

A hook scores tokens with the layer's own attention on its input (scoring.py) and
calls ``state.select`` to drop tokens before the layer runs. All cross-step state
(previous scores, frame history, mode) lives in the policy, never here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from specprune.config import PruneConfig, resolve_layers
from specprune.prune.decoder import DecoderState
from specprune.model.modeling_vla import SequenceLayout
from specprune.prune.scoring import column_scores, mean_entropy, query_attention
from specprune.prune.selection import (layer_drop_mask, rank_weights, round_up_to_bucket,
                                       scatter_scores, topk_per_view)


class _VisualScorer:
    """Shared plumbing: Eq. 1 scores of the present visual tokens as a (V,) vector."""

    def __init__(self, layout: SequenceLayout, query_positions: Tuple[int, ...]) -> None:
        self.layout = layout
        self.num_visual = layout.num_visual
        self._queries = torch.tensor(query_positions, dtype=torch.long)

    def visual_positions(self, state: DecoderState) -> torch.Tensor:
        """Current indices of the visual tokens still present."""
        v0 = self.layout.visual_start
        return torch.nonzero((state.positions >= v0)
                             & (state.positions < v0 + self.num_visual)).squeeze(1)

    def score(self, layer: nn.Module, state: DecoderState) -> Tuple[torch.Tensor, torch.Tensor]:
        query_idx = state.index_of(self._queries.to(state.positions.device))
        probs = query_attention(layer, state.hidden, state.cos, state.sin, query_idx)
        vis = self.visual_positions(state)
        values = column_scores(probs, vis)
        original = state.positions[vis] - self.layout.visual_start
        return scatter_scores(values, original, self.num_visual), probs

    def keep_visual(self, state: DecoderState, mask: torch.Tensor) -> None:
        """Drop every present visual token not in ``mask`` (non-visual tokens stay)."""
        rel = state.positions - self.layout.visual_start
        is_visual = (rel >= 0) & (rel < self.num_visual)
        keep = ~is_visual | mask[rel.clamp(0, self.num_visual - 1)]
        state.select(torch.nonzero(keep).squeeze(1))


@dataclass
class SpecPruneTrace:
    """What the SpecPrune hook decided in one pass."""

    static_mask: Optional[torch.Tensor] = None  # (V,) visual tokens after static selection
    global_scores: Dict[int, torch.Tensor] = field(default_factory=dict)
    n_local: int = 0
    selection_s: float = 0.0


class SpecPruneHook(_VisualScorer):
    """Static selection over layers 0-1 plus dynamic layer-level pruning."""

    def __init__(self, cfg: PruneConfig, layout: SequenceLayout, num_layers: int, fine: bool,
                 global_mask: torch.Tensor, dynamic_mask: torch.Tensor) -> None:
        super().__init__(layout, layout.query_positions)
        self.cfg = cfg
        self.fine = fine
        self.fixed = global_mask | dynamic_mask  # V_global U V_dynamic, always kept
        depth = cfg.layer_depth
        self.global_layers = resolve_layers(cfg.global_score_layers, num_layers, depth)
        self.prune_layers = (resolve_layers(cfg.layer_prune_layers, num_layers, depth, 2)
                             if cfg.layer_prune_enabled else ())
        self.trace = SpecPruneTrace()
        self._scores: Dict[int, torch.Tensor] = {}
        self._probs: Dict[int, torch.Tensor] = {}
        self._ema: Optional[torch.Tensor] = None

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        start = time.perf_counter()
        self._static_step(index, layer, state)
        if index in self.prune_layers:
            self._layer_prune(index, layer, state)
        if index in self.global_layers:
            self.trace.global_scores[index] = self._layer_scores(index, layer, state)[0]
        self.trace.selection_s += time.perf_counter() - start

    def _layer_scores(self, index: int, layer: nn.Module,
                      state: DecoderState) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores of this layer on its current input (computed once per layer)."""
        if index not in self._scores:
            self._scores[index], self._probs[index] = self.score(layer, state)
        return self._scores[index], self._probs[index]

    def _local_ks(self, factor: float = 1.0) -> List[int]:
        return [int(math.ceil(self.cfg.local_k(self.fine, v) * factor))
                for v in range(self.layout.num_views)]

    def _static_step(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        per_view = self.layout.patches_per_view
        if index == 0:
            self._layer_scores(0, layer, state)
        elif index == 1:
            factor = self.cfg.local_candidate_factor if self.cfg.refine_after_layer1 else 1.0
            local = topk_per_view(self._scores[0], per_view, self._local_ks(factor))
            if self.cfg.refine_after_layer1:
                self.keep_visual(state, self.fixed | local)
                self._layer_scores(1, layer, state)
            else:
                self._finish_static(state, local, self._scores[0])
        elif index == 2 and self.cfg.refine_after_layer1:
            present = self._scores[1]
            s0 = torch.where(torch.isfinite(present), self._scores[0], present)
            ks = self._local_ks()
            local = topk_per_view(s0, per_view, ks) | topk_per_view(present, per_view, ks)
            self._finish_static(state, local, present)

    def _finish_static(self, state: DecoderState, local: torch.Tensor,
                       ranking: torch.Tensor) -> None:
        keep = round_up_to_bucket(self.fixed | local, ranking, self.cfg.bucket_size)
        self.trace.n_local = int(local.sum())
        self.trace.static_mask = keep
        self.keep_visual(state, keep)

    def _layer_prune(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        scores, probs = self._layer_scores(index, layer, state)
        weight = rank_weights(scores, self.cfg.layer_prune_rank_k) / (
            float(mean_entropy(probs)) + 1e-6)
        beta = self.cfg.layer_prune_ema_beta
        self._ema = weight if self._ema is None else beta * self._ema + (1 - beta) * weight
        keep = layer_drop_mask(self._ema, torch.isfinite(scores), self.cfg.layer_prune_ratio,
                               self.cfg.layer_prune_min_visual)
        self.keep_visual(state, keep)


class FastVHook(_VisualScorer):
    """FastV baseline: at ``layer_index`` keep the ``budget`` visual tokens that the last
    prompt token attends to most (all views ranked together)."""

    def __init__(self, layout: SequenceLayout, layer_index: int, budget: int) -> None:
        super().__init__(layout, (layout.head_start,))
        self.layer_index, self.budget = layer_index, budget

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index != self.layer_index:
            return
        scores, _ = self.score(layer, state)
        keep = torch.zeros(self.num_visual, dtype=torch.bool, device=scores.device)
        keep[torch.topk(scores, min(self.budget, self.num_visual)).indices] = True
        self.keep_visual(state, keep)


class ScoreProbe(_VisualScorer):
    """Records Eq. 1 scores at some layers of an unpruned pass (for hit-rate analysis)."""

    def __init__(self, layout: SequenceLayout, layers: Tuple[int, ...]) -> None:
        super().__init__(layout, layout.query_positions)
        self.layers = layers
        self.scores: Dict[int, torch.Tensor] = {}

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index in self.layers:
            self.scores[index] = self.score(layer, state)[0]


def combine_global_scores(per_layer: Dict[int, torch.Tensor]) -> Optional[torch.Tensor]:
    """Mean over the recorded layers; -inf where no layer saw the token."""
    if not per_layer:
        return None
    stack = torch.stack(list(per_layer.values()))
    seen = torch.isfinite(stack)
    total = torch.where(seen, stack, torch.zeros_like(stack)).sum(0) / len(per_layer)
    return torch.where(seen.any(0), total, torch.full_like(total, -math.inf))
