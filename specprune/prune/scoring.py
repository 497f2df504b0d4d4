"""Eq. 1 importance from a few recomputed query rows (never a full attention map).

At a scoring layer: RMSNorm the layer input, project the query rows (task-text tokens)
with q_proj and every token with k_proj, apply RoPE at each token's original position,
softmax over all keys. Cost: Q query rows + one k_proj over the sequence.
"""
from __future__ import annotations

import torch
from torch import nn


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin  # (H, T, hd) with cos/sin (1, T, hd)


def query_attention(layer: nn.Module, hidden: torch.Tensor, cos: torch.Tensor,
                    sin: torch.Tensor, query_idx: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of the query rows at this decoder layer.

    hidden: (1, T, D) layer input; cos/sin: (1, T, hd); query_idx: (Q,) indices into T.
    Returns (H, Q, T) float32 probabilities (bidirectional: every key is visible).
    """
    return batched_query_attention(layer, hidden, cos, sin, query_idx)[0]


def batched_query_attention(layer: nn.Module, hidden: torch.Tensor, cos: torch.Tensor,
                            sin: torch.Tensor, query_idx: torch.Tensor) -> torch.Tensor:
    """``query_attention`` for a batch: hidden (B, T, D) -> (B, H, Q, T) probabilities
    (training reads the same scores the pruned pass will use); cos/sin (1, T, hd), the
    positions every sample of the batch shares."""
    attn = layer.self_attn
    hd = attn.head_dim
    b, t = hidden.shape[:2]
    normed = layer.input_layernorm(hidden)  # (B, T, D)
    q = attn.q_proj(normed[:, query_idx]).view(b, len(query_idx), -1, hd).transpose(1, 2)
    k = attn.k_proj(normed).view(b, t, -1, hd).transpose(1, 2)  # (B, Hkv, T, hd)
    q = _rope(q, cos[:, query_idx], sin[:, query_idx])  # (B, H, Q, hd)
    k = _rope(k, cos, sin)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # GQA -> (B, H, T, hd)
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scaling  # (B,H,Q,T)
    return torch.softmax(logits, dim=-1)


def column_scores(probs: torch.Tensor, columns: "torch.Tensor | slice") -> torch.Tensor:
    """Eq. 1: mean over heads and query rows of the attention paid to each column.
    ``probs`` (heads, queries, keys), or (batch, heads, queries, keys) for one score row
    per sample; ``columns`` an index tensor or a slice of the keys."""
    return probs[..., columns].mean(dim=(-3, -2))


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the attention rows (the ICML confidence uses its inverse)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
