"""Eq. 1 importance from the query rows of a layer's attention (never a full attention map).

At a scoring layer: RMSNorm the layer input, project the query rows (task-text tokens)
with q_proj and every token with k_proj, apply RoPE at each token's original position,
softmax over all keys (layer_forward.py). In the pruned pass the keys are the layer's own
(``DecoderState.layer_input``); these functions compute them for a hidden state given
alone (training's attention loss, tests).
"""
from __future__ import annotations

import torch
from torch import nn

from specprune.prune.layer_forward import QueryRope, layer_input, query_probs


def batched_query_attention(layer: nn.Module, hidden: torch.Tensor, cos: torch.Tensor,
                            sin: torch.Tensor, query_idx: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of the query rows (``query_idx``, (Q,) indices into T) at
    this decoder layer for a batch: hidden (B, T, D) -> (B, H, Q, T) float32, bidirectional
    (training reads the same scores the pruned pass will use); cos/sin (1, T, hd), the
    positions every sample of the batch shares."""
    return query_probs(layer, layer_input(layer, hidden, cos, sin),
                       QueryRope.at(cos, sin, query_idx), query_idx)


def column_scores(probs: torch.Tensor, columns: "torch.Tensor | slice") -> torch.Tensor:
    """Eq. 1: mean over heads and query rows of the attention paid to each column.
    ``probs`` (heads, queries, keys), or (batch, heads, queries, keys) for one score row
    per sample; ``columns`` an index tensor or a slice of the keys."""
    return probs[..., columns].mean(dim=(-3, -2))


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the attention rows (the ICML confidence uses its inverse)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()  # (entr: 1.5x slower)
