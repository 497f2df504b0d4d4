"""One Llama decoder layer, run from a normed input and keys computed once.

SpecPrune scores a layer's tokens with that layer's own attention on its input (Eq. 1):
the query rows of the task text against every key. The keys are part of the layer's own
work, so they are computed once here (``layer_input``) and shared: the scorer reads them,
the pruning step keeps a subset of them, and the layer then runs on that subset without
normalising or projecting a key again (``forward_layer``). Scoring adds only the query
rows' projection and a (heads, queries, tokens) softmax.

The arithmetic is that of ``transformers``' ``LlamaDecoderLayer`` with SDPA and no mask
(bidirectional, as in the OFT fork), using the layer's own modules; the unpruned pass runs
through the same function, so the comparison stays like for like.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on (B, H, T, hd) with cos/sin (B or 1, T, hd) at each token's original position."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, T, H * hd) -> (B, H, T, hd)."""
    b, t = x.shape[:2]
    return x.view(b, t, -1, head_dim).transpose(1, 2)


@dataclass
class LayerInput:
    """What a layer computes first from its input, for the tokens present."""

    normed: torch.Tensor  # (B, T, D) input_layernorm(hidden)
    keys: torch.Tensor  # (B, Hkv, T, hd) k_proj with RoPE

    def select(self, keep: torch.Tensor) -> "LayerInput":
        return LayerInput(self.normed.index_select(1, keep), self.keys.index_select(2, keep))


def layer_input(layer: nn.Module, hidden: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> LayerInput:
    normed = layer.input_layernorm(hidden)
    keys = apply_rope(_heads(layer.self_attn.k_proj(normed), layer.self_attn.head_dim),
                      cos, sin)
    return LayerInput(normed, keys)


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


@dataclass
class QueryRope:
    """RoPE of the query rows at their original positions, taken once per pass (it
    travels with the rows) in the form ``query_probs`` applies with four operations:
    x * cos + roll(x, hd/2) * sin_signed, where sin_signed = (-sin_1, sin_2) makes the
    roll rotate_half. (B or 1, 1, Q, hd) each."""

    cos: torch.Tensor
    sin_signed: torch.Tensor

    @classmethod
    def at(cls, cos: torch.Tensor, sin: torch.Tensor,
           rows: "torch.Tensor | slice") -> "QueryRope":
        """From the (B or 1, T, hd) cos/sin of the present tokens and the rows' indices."""
        c, s = cos[:, rows], sin[:, rows]
        half = s.shape[-1] // 2
        return cls(c.unsqueeze(1), torch.cat((-s[..., :half], s[..., half:]), -1).unsqueeze(1))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``apply_rope`` on (B, H, Q, hd) query rows, bit for bit."""
        return x * self.cos + torch.roll(x, x.shape[-1] // 2, dims=-1) * self.sin_signed


def query_probs(layer: nn.Module, inp: LayerInput, rope: QueryRope,
                query_rows: "torch.Tensor | slice") -> torch.Tensor:
    """Softmax attention of the query rows over every present key: (B, H, Q, T) float32.

    ``query_rows`` picks the rows from the present tokens (indices or a slice); ``rope``
    is RoPE at those rows' original positions. Grouped-query heads read their shared key
    head without copying it: head h uses key head h // (H / Hkv), as the layer's own
    attention does."""
    attn = layer.self_attn
    q = rope.apply(_heads(attn.q_proj(inp.normed[:, query_rows]), attn.head_dim))
    b, h, nq, hd = q.shape
    kv = inp.keys.shape[1]
    grouped = q.reshape(b, kv, (h // kv) * nq, hd)
    logits = torch.matmul(_float32(grouped), _float32(inp.keys).transpose(-1, -2))
    return torch.softmax(logits.mul_(attn.scaling).view(b, h, nq, -1), dim=-1)


def forward_layer(layer: nn.Module, hidden: torch.Tensor, inp: LayerInput,
                  cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The decoder layer on ``hidden`` (B, T, D), given its ``LayerInput`` for those tokens."""
    attn = layer.self_attn
    q = apply_rope(_heads(attn.q_proj(inp.normed), attn.head_dim), cos, sin)
    v = _heads(attn.v_proj(inp.normed), attn.head_dim)
    out = F.scaled_dot_product_attention(q, inp.keys, v, scale=attn.scaling,
                                         enable_gqa=inp.keys.shape[1] != q.shape[1])
    b, t = hidden.shape[:2]
    hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))
