"""Small configurations of the real OpenVLA-OFT architecture (random weights).

- ``tiny``: seconds-fast, for unit tests (2 views of 16x16 patches, 4 layers).
- ``oft-cpu``: OpenVLA-OFT's token layout (2 x 256 patches, proprio, real prompt, 56
  action slots) and depth (32 Llama layers) at a width a 2-core CPU runs in ~1-2 s; the
  vision encoders are sized to ~10 % of the step's FLOPs, as in the 7B model.
- ``sim-small``: the same token layout at a size trained from scratch on this 2-core CPU
  (specprune.train.training): 6 Llama layers (SpecPrune scores in layers 0/1 and prunes the
  later ones) of width 128, ViTs of width 64 and depth 3 (features from block 2 of 3).
  Measured fwd+bwd, batch 16, float32, 2 threads, 2-core AMD EPYC: 10.6 samples/s over the
  shipped 2000-step run (checkpoints/pick_color/training_summary.json).
- ``libero-deep``: sim-small's widths at 16 Llama layers, the multi-task LIBERO policy
  (issue #19). Deep enough for every part of SpecPrune to act: with ``PruneConfig
  layer_depth=32`` the paper's pruning layers 5/10/15/20 map to 3/5/8/10 and V_global's
  layers 14/-1 to 7/15; scoring stays in layers 0/1. Its cost is in the README's LIBERO
  section (training samples/s and policy step against sim-small).
Layouts of the released checkpoints (LIBERO, ALOHA) live in the torch-free
``specprune.model.layouts`` (the robot side reads them); ``LAYOUTS`` and ``ActionLayout`` are
re-exported here for the model code.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from specprune.model.layouts import LAYOUTS, ActionLayout  # noqa: F401 - re-exported
from specprune.model.modeling_vla import VLAConfig
from specprune.model.processing import PIPELINE_TORCH


def _llama(hidden: int, layers: int, heads: int, mlp: int, vocab: int) -> Dict[str, Any]:
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=heads, intermediate_size=mlp, vocab_size=vocab,
                max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
                bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False)


def _vit(dim: int, depth: int, heads: int) -> Dict[str, Any]:
    return dict(embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=4.0)


_PRESET_SHAPES = {
    # name: (llm hidden, layers, heads, mlp, vit dim, vit depth, vit heads)
    "tiny": (64, 4, 4, 128, 32, 3, 2),
    "oft-cpu": (512, 32, 8, 1376, 256, 6, 4),
    "sim-small": (128, 6, 4, 344, 64, 3, 2),
    "libero-deep": (128, 16, 4, 344, 64, 3, 2),
}
PRESETS = tuple(_PRESET_SHAPES)


def _shape(name: str):
    if name not in _PRESET_SHAPES:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return _PRESET_SHAPES[name]


def preset_config(name: str, vocab_size: int, empty_token_id: int,
                  layout: str = "libero") -> VLAConfig:
    hidden, layers, heads, mlp, vdim, vdepth, vheads = _shape(name)
    lay = LAYOUTS[layout]
    vocab = int(np.ceil(vocab_size / 64) * 64)  # OpenVLA pads the vocabulary to 64
    return VLAConfig(
        text_config=_llama(hidden, layers, heads, mlp, vocab),
        timm_overrides=(_vit(vdim, vdepth, vheads), _vit(vdim, vdepth, vheads)),
        num_images=lay.num_images, chunk=lay.chunk, action_dim=lay.action_dim,
        proprio_dim=lay.proprio_dim, empty_token_id=empty_token_id,
        image_pipeline=PIPELINE_TORCH)  # what specprune-train feeds the presets


def preset_depth(name: str) -> int:
    """The number of decoder (Llama) layers of preset ``name``."""
    return _shape(name)[1]


def synthetic_statistics(layout: str = "libero") -> Dict[str, Any]:
    """Dataset statistics in the released dataset_statistics.json format (LIBERO-like
    bounds; the gripper dimension is masked out, as in the released files)."""
    lay = LAYOUTS[layout]
    a_lo = np.full(lay.action_dim, -0.9375)
    a_hi = np.full(lay.action_dim, 0.9375)
    mask = np.ones(lay.action_dim, dtype=bool)
    mask[-1] = False
    p_lo, p_hi = np.full(lay.proprio_dim, -1.0), np.full(lay.proprio_dim, 1.0)
    stats = {"action": _stat_block(a_lo, a_hi, mask), "proprio": _stat_block(p_lo, p_hi, None)}
    return {"synthetic": dict(stats, num_transitions=0, num_trajectories=0)}


def _stat_block(lo: np.ndarray, hi: np.ndarray, mask) -> Dict[str, Any]:
    block = {"mean": ((lo + hi) / 2).tolist(), "std": ((hi - lo) / 4).tolist(),
             "min": lo.tolist(), "max": hi.tolist(), "q01": lo.tolist(), "q99": hi.tolist()}
    if mask is not None:
        block["mask"] = mask.tolist()
    return block
