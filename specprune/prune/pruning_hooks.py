"""Decoder hooks: SpecPrune (static + dynamic), the FastV baseline, and a score probe.

A hook scores tokens with the layer's own attention on its input, from the keys the
layer then runs with (``DecoderState.layer_input``, scoring.py), and calls
``state.select`` to drop tokens before the layer runs. All cross-step state
(previous scores, frame history, mode) lives in the policy, never here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from specprune.config import PruneConfig, global_score_layers, layer_pruning_layers
from specprune.prune.decoder import DecoderState
from specprune.model.modeling_vla import SequenceLayout
from specprune.prune.layer_forward import QueryRope, query_probs
from specprune.prune.scoring import column_scores, mean_entropy
from specprune.prune.selection import (keep_highest, rank_weights, round_up_to_bucket,
                                       scatter_scores, topk_per_view)


@dataclass
class LayerScores:
    """Eq. 1 scores of one layer for the visual tokens present there."""

    values: torch.Tensor  # (n,) in sequence order
    ids: torch.Tensor  # (n,) their visual ids 0..V-1, increasing
    probs: torch.Tensor  # (H, Q, T) the query rows' attention
    num_visual: int
    _full: Optional[torch.Tensor] = None

    def full(self) -> torch.Tensor:
        """(V,) scores, -inf for tokens no longer present."""
        if self._full is None:
            self._full = (self.values if self.values.numel() == self.num_visual
                          else scatter_scores(self.values, self.ids, self.num_visual))
        return self._full


class VisualScorer:
    """Shared plumbing: Eq. 1 scores of the present visual tokens, dropping visual tokens.

    Hooks drop visual tokens only, so the present visual tokens are always the contiguous
    block of the sequence that starts at ``visual_start``."""

    def __init__(self, layout: SequenceLayout, query_positions: Tuple[int, ...]) -> None:
        self.layout = layout
        self.num_visual = layout.num_visual
        self._queries = torch.tensor(query_positions, dtype=torch.long)
        first = self._first_query = query_positions[0] if query_positions else 0
        # task-text queries are one block after the visual tokens: their current rows are
        # a slice that moves back by the number of visual tokens dropped
        self._query_block = (bool(query_positions) and first >= layout.visual_range().stop
                             and tuple(query_positions) == tuple(
                                 range(first, first + len(query_positions))))
        self._query_rope: Optional[QueryRope] = None  # this pass's
        self._head_rows: Optional[torch.Tensor] = None  # arange(visual_start), once
        #: a one-shot baseline's (V,) kept visual tokens once it dropped (for the step's
        #: ``kept_masks``: which tokens it keeps, next to SpecPrune's)
        self.kept_mask: Optional[torch.Tensor] = None

    def present(self, state: DecoderState) -> slice:
        """Current indices of the visual tokens still present."""
        return self.layout.present_visual(state.hidden.shape[1])

    def query_rows(self, state: DecoderState) -> "torch.Tensor | slice":
        """Current indices of the query rows."""
        if self._query_block:
            start = self._first_query - (self.layout.length - state.hidden.shape[1])
            return slice(start, start + self._queries.numel())
        return state.index_of(self._queries.to(state.positions.device))

    def query_attention(self, layer: nn.Module, state: DecoderState) -> torch.Tensor:
        """(B, H, Q, T) attention of the query rows over the present tokens, from the keys
        the layer then runs with."""
        rows = self.query_rows(state)
        if self._query_rope is None:  # RoPE at the rows' original positions: once a pass
            self._query_rope = QueryRope.at(state.cos, state.sin, rows)
        return query_probs(layer, state.layer_input(layer), self._query_rope, rows)

    def score(self, layer: nn.Module, state: DecoderState) -> LayerScores:
        probs = self.query_attention(layer, state)[0]
        vis = self.present(state)
        ids = state.positions[vis] - self.layout.visual_start
        return LayerScores(column_scores(probs, vis), ids, probs, self.num_visual)

    def keep_visual(self, state: DecoderState, mask: torch.Tensor) -> None:
        """Drop every present visual token not in the (V,) ``mask``."""
        vis = self.present(state)
        if vis.stop - vis.start < self.num_visual:  # some already dropped: theirs only
            mask = mask[state.positions[vis] - self.layout.visual_start]
        self.keep_present(state, torch.nonzero(mask).squeeze(1))

    def keep_present(self, state: DecoderState, kept: torch.Tensor) -> None:
        """Keep the present visual tokens at (n,) increasing indices ``kept`` into them, or
        (B, n) a set per sample (the tokens before and after the visual block stay)."""
        vis, device = self.present(state), state.positions.device
        if self._head_rows is None:
            self._head_rows = torch.arange(vis.start, device=device)
        tail = torch.arange(vis.stop, state.hidden.shape[1], device=device)
        lead = kept.shape[:-1]  # () or (B,)
        state.select(torch.cat((self._head_rows.expand(*lead, -1), kept + vis.start,
                                tail.expand(*lead, -1)), -1))


@dataclass
class SpecPruneTrace:
    """What the SpecPrune hook decided in one pass."""

    static_mask: Optional[torch.Tensor] = None  # (V,) visual tokens after static selection
    global_scores: Dict[int, torch.Tensor] = field(default_factory=dict)
    n_local: int = 0
    scored_layers: int = 0
    selection_s: float = 0.0


class SpecPruneHook(VisualScorer):
    """Static selection over layers 0-1 (``local_first_layer``) plus dynamic layer-level
    pruning."""

    def __init__(self, cfg: PruneConfig, layout: SequenceLayout, num_layers: int, fine: bool,
                 global_mask: torch.Tensor, dynamic_mask: torch.Tensor,
                 cover_mask: Optional[torch.Tensor] = None) -> None:
        super().__init__(layout, layout.query_positions)
        self.cfg = cfg
        self.fine = fine
        self.global_dynamic = global_mask | dynamic_mask  # V_global U V_dynamic
        #: V_cover (coverage_k): in the static set; unless coverage_spared_by_layer_pruning
        #: is off, never dropped by layer pruning (its count is each pruning layer's floor)
        self.cover = cover_mask
        self.cover_count = 0 if cover_mask is None else int(cover_mask.sum())
        #: always in the static set
        self.fixed = (self.global_dynamic if cover_mask is None
                      else self.global_dynamic | cover_mask)
        self.global_layers = global_score_layers(cfg, num_layers)
        self.prune_layers = layer_pruning_layers(cfg, num_layers)
        self.trace = SpecPruneTrace()
        self._scores: Dict[int, LayerScores] = {}
        self._ema: Optional[torch.Tensor] = None  # (V,) rank-weight EMA over pruning layers

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        start, layer_work = time.perf_counter(), state.input_s
        self._static_step(index, layer, state)
        if index in self.prune_layers:
            self._layer_prune(index, layer, state)
        if index in self.global_layers:
            self.trace.global_scores[index] = self._layer_scores(index, layer, state).full()
        # the layer's own input (normed states, keys) is its work, done early for the scores
        self.trace.selection_s += (time.perf_counter() - start) - (state.input_s - layer_work)

    def _layer_scores(self, index: int, layer: nn.Module, state: DecoderState) -> LayerScores:
        """Scores of this layer on its current input (computed once per layer)."""
        if index not in self._scores:
            self._scores[index] = self.score(layer, state)
            self.trace.scored_layers += 1
        return self._scores[index]

    def _local_ks(self, factor: float = 1.0) -> List[int]:
        return [int(math.ceil(self.cfg.local_k(self.fine, v) * factor))
                for v in range(self.layout.num_views)]

    def _static_step(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        """V_local from the scores of layers s and s + 1 (s = ``local_first_layer``, the
        paper's 0): candidates before layer s + 1, the final set before s + 2."""
        per_view, s = self.layout.patches_per_view, self.cfg.local_first_layer
        if index == s:
            self._layer_scores(s, layer, state)
        elif index == s + 1:
            factor = self.cfg.local_candidate_factor if self.cfg.refine_after_layer1 else 1.0
            first = self._scores[s].full()
            local = topk_per_view(first, per_view, self._local_ks(factor))
            if self.cfg.refine_after_layer1:
                self.keep_visual(state, self.fixed | local)
                self._layer_scores(s + 1, layer, state)
            else:
                self._finish_static(state, local, first)
        elif index == s + 2 and self.cfg.refine_after_layer1:
            present = self._scores[s + 1].full()
            s0 = torch.where(torch.isfinite(present), self._scores[s].full(), present)
            ks = self._local_ks()
            local = topk_per_view(s0, per_view, ks) | topk_per_view(present, per_view, ks)
            self._finish_static(state, local, present)

    def _finish_static(self, state: DecoderState, local: torch.Tensor,
                       ranking: torch.Tensor) -> None:
        if self.cover is not None and self.cfg.coverage_in_budget:
            keep = self._cover_within_budget(local, ranking)
        else:
            keep = round_up_to_bucket(self.fixed | local, ranking, self.cfg.bucket_size)
        self.trace.n_local = int(local.sum())
        self.trace.static_mask = keep
        self.keep_visual(state, keep)

    def _cover_within_budget(self, local: torch.Tensor, ranking: torch.Tensor) -> torch.Tensor:
        """V_cover plus, per view, the best-ranked tokens of the set SpecPrune would keep
        without it, up to that set's count (the view's count grows only where V_cover alone
        is larger). That set minus V_cover always holds enough: |plain - cover| >= |plain| -
        |cover|, and every token of it is present, so ranked."""
        views, bucket = self.layout.num_views, self.cfg.bucket_size
        plain = round_up_to_bucket(self.global_dynamic | local, ranking, bucket)
        wanted = (plain.view(views, -1).sum(1) - self.cover.view(views, -1).sum(1)).clamp(min=0)
        rest = torch.where(plain & ~self.cover, ranking, torch.full_like(ranking, -math.inf))
        extra = topk_per_view(rest, self.layout.patches_per_view, wanted.tolist())
        return round_up_to_bucket(self.cover | extra, ranking, bucket)

    def _layer_prune(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        scores = self._layer_scores(index, layer, state)
        weight = rank_weights(scores.values, self.cfg.layer_prune_rank_k) / (
            float(mean_entropy(scores.probs)) + 1e-6)
        if self._ema is None:
            ema = weight
            self._ema = torch.zeros(self.num_visual, dtype=weight.dtype, device=weight.device)
        else:  # beta * previous + (1 - beta) * this layer's
            ema = torch.lerp(weight, self._ema[scores.ids], self.cfg.layer_prune_ema_beta)
        self._ema[scores.ids] = ema
        floor = self.cfg.layer_prune_min_visual
        if self.cover is not None and self.cfg.coverage_spared_by_layer_pruning:
            ema = ema.masked_fill(self.cover[scores.ids], math.inf)  # above every other token
            floor = max(floor, self.cover_count)
        kept = keep_highest(ema, self.cfg.layer_prune_ratio, floor)
        if kept is not None:
            self.keep_present(state, kept)


class FastVHook(VisualScorer):
    """FastV baseline: at ``layer_index`` keep the ``budget`` visual tokens that the last
    prompt token attends to most (all views ranked together)."""

    def __init__(self, layout: SequenceLayout, layer_index: int, budget: int) -> None:
        super().__init__(layout, (layout.head_start,))
        self.layer_index, self.budget = layer_index, budget

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index != self.layer_index:
            return
        scores = self.score(layer, state).full()
        keep = torch.zeros(self.num_visual, dtype=torch.bool, device=scores.device)
        keep[torch.topk(scores, min(self.budget, self.num_visual)).indices] = True
        self.keep_visual(state, keep)
        self.kept_mask = keep


class ScoreProbe(VisualScorer):
    """Records Eq. 1 scores at some layers of an unpruned pass (for hit-rate analysis);
    ``queries``: other query rows than the task text's (e.g. the action slots)."""

    def __init__(self, layout: SequenceLayout, layers: Tuple[int, ...],
                 queries: Optional[Tuple[int, ...]] = None) -> None:
        super().__init__(layout, layout.query_positions if queries is None else queries)
        self.layers = layers
        self.scores: Dict[int, torch.Tensor] = {}

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index in self.layers:
            self.scores[index] = self.score(layer, state).full()


def combine_global_scores(per_layer: Dict[int, torch.Tensor]) -> Optional[torch.Tensor]:
    """Mean over the recorded layers; -inf where no layer saw the token."""
    if not per_layer:
        return None
    stack = torch.stack(list(per_layer.values()))
    seen = torch.isfinite(stack)
    total = torch.where(seen, stack, torch.zeros_like(stack)).sum(0) / len(per_layer)
    return torch.where(seen.any(0), total, torch.full_like(total, -math.inf))
