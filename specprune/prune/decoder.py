"""The Llama decoder run layer by layer on a shrinking token set.

The unpruned pass is the same loop with no hook: SDPA, no mask (bidirectional), all
tokens. A hook may drop tokens before any layer; kept tokens keep their original
positions because hidden states and the RoPE cos/sin are gathered together. A hook that
scores a layer asks the state for the layer's input (normed hidden states and keys,
layer_forward.py); they are kept through ``select`` and the layer runs from them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Protocol

import torch
from torch import nn

from specprune.prune.layer_forward import LayerInput, forward_layer, layer_input


@dataclass
class DecoderState:
    """The token set entering the current layer."""

    hidden: torch.Tensor  # (1, T, D)
    positions: torch.Tensor  # (T,) original sequence positions, increasing
    cos: torch.Tensor  # (1, T, hd)
    sin: torch.Tensor  # (1, T, hd)
    tokens_per_layer: List[int] = field(default_factory=list)
    pending: Optional[LayerInput] = None  # the next layer's input, once computed
    input_s: float = 0.0  # time spent computing layer inputs (the layers' own work)

    def select(self, keep: torch.Tensor) -> None:
        """Keep the tokens at indices ``keep`` (into the current set, increasing): (T',)
        for every sample, or (B, T') a set per sample of the same size (training's scored
        token drops); then positions become (B, T') and cos / sin (B, T', hd)."""
        if keep.dim() == 2:
            self._select_per_sample(keep)
            return
        self.hidden = self.hidden.index_select(1, keep)
        self.positions = self.positions.index_select(0, keep)
        self.cos = self.cos.index_select(1, keep)
        self.sin = self.sin.index_select(1, keep)
        if self.pending is not None:
            self.pending = self.pending.select(keep)

    def _select_per_sample(self, keep: torch.Tensor) -> None:
        def gather(x: torch.Tensor) -> torch.Tensor:  # (1 or B, T, d) -> (B, T', d)
            x = x.expand(keep.shape[0], -1, -1)
            return x.gather(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        if self.positions.dim() != 1:
            raise ValueError("tokens were already selected per sample")
        self.hidden, self.cos, self.sin = gather(self.hidden), gather(self.cos), gather(self.sin)
        self.positions = self.positions[keep]
        self.pending = None  # recomputed from the kept tokens

    def index_of(self, original_positions: torch.Tensor) -> torch.Tensor:
        """Current indices of tokens given by original position (they must be present)."""
        return torch.searchsorted(self.positions, original_positions)

    def layer_input(self, layer: nn.Module) -> LayerInput:
        """The input of ``layer`` (the next to run) for the present tokens, computed once."""
        if self.pending is None:
            start = time.perf_counter()
            self.pending = layer_input(layer, self.hidden, self.cos, self.sin)
            self.input_s += time.perf_counter() - start
        return self.pending


class LayerHook(Protocol):
    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        """Inspect (score) and optionally ``state.select`` before layer ``index`` runs."""


def run_decoder(decoder: nn.Module, embeds: torch.Tensor,
                hook: Optional[LayerHook] = None) -> DecoderState:
    """Run every decoder layer; returns the final state with final-norm hidden states."""
    positions = torch.arange(embeds.shape[1], device=embeds.device)
    cos, sin = decoder.rotary_emb(embeds, positions.unsqueeze(0))
    state = DecoderState(embeds, positions, cos, sin)
    for i, layer in enumerate(decoder.layers):
        if hook is not None:
            hook.before_layer(i, layer, state)
        state.tokens_per_layer.append(state.hidden.shape[1])
        inp = state.layer_input(layer)
        state.pending = None
        state.hidden = forward_layer(layer, state.hidden, inp, state.cos, state.sin)
    state.hidden = decoder.norm(state.hidden)
    return state
