"""The OpenVLA-OFT model: vision -> projector (+ proprio token) -> Llama-2 -> L1 action head.

Token order of one step (the released ``predict_action``):
    [BOS] [view-0 patches] [view-1 patches] ... [proprio] [prompt tokens after BOS]
    [chunk * action_dim empty action slots] [stop]
Action-slot embeddings are zeros; attention is bidirectional over the whole sequence
(the OpenVLA-OFT transformers fork); the head reads the final-norm hidden states of
``chunk * action_dim`` positions starting at NUM_PATCHES + NUM_PROMPT_TOKENS (the last
prompt token, then the action slots), exactly as the reference slices them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from specprune.model.modeling_heads import FusedProjector, L1RegressionActionHead, ProprioProjector
from specprune.model.modeling_vision import VisionBackbone
from specprune.model.processing import PIPELINE_REFERENCE, check_pipeline

DINOV2_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_ID = "vit_so400m_patch14_siglip_224"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class VLAConfig:
    """Architecture of one OpenVLA-OFT model (what config.json + layout describe)."""

    text_config: Dict[str, Any]
    timm_model_ids: Tuple[str, str] = (DINOV2_ID, SIGLIP_ID)
    timm_override_act_layers: Tuple[Optional[str], Optional[str]] = (None, None)
    timm_overrides: Tuple[Dict[str, Any], Dict[str, Any]] = ({}, {})
    image_size: int = 224
    num_images: int = 2
    chunk: int = 8
    action_dim: int = 7
    proprio_dim: int = 8  # 0: no proprio token
    empty_token_id: int = 29871  # Llama-2 '▁', appended after "Out:" as at train time
    stop_token_id: int = 2  # '</s>'
    image_means: Tuple[Tuple[float, ...], ...] = (IMAGENET_MEAN, SIGLIP_MEAN)
    image_stds: Tuple[Tuple[float, ...], ...] = (IMAGENET_STD, SIGLIP_STD)
    center_crop_scale: float = 0.9  # area of the centre crop (LIBERO eval); 1.0 disables
    # which pixels the model was trained on (processing.py): "reference" = openvla-oft's
    # TF ops exactly (released checkpoints), "torch" = specprune's own training pipeline
    image_pipeline: str = PIPELINE_REFERENCE
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("image_size", "num_images", "chunk", "action_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VLAConfig.{name} must be positive, got {getattr(self, name)}")
        if self.proprio_dim < 0:
            raise ValueError(f"VLAConfig.proprio_dim must be >= 0, got {self.proprio_dim}")
        if not 0.0 < self.center_crop_scale <= 1.0:
            raise ValueError(f"VLAConfig.center_crop_scale must be in (0, 1], "
                             f"got {self.center_crop_scale}")
        try:
            check_pipeline(self.image_pipeline)
        except ValueError as err:
            raise ValueError(f"VLAConfig.image_pipeline: {err}") from None

    @property
    def num_action_slots(self) -> int:
        return self.chunk * self.action_dim


@dataclass(frozen=True)
class SequenceLayout:
    """Where each kind of token sits in the full (unpruned) sequence."""

    length: int
    num_views: int
    patches_per_view: int
    visual_start: int  # = 1, after BOS
    head_start: int  # first position whose hidden state feeds the action head
    num_head_positions: int
    query_positions: Tuple[int, ...]  # task-text tokens used as importance queries

    @property
    def num_visual(self) -> int:
        return self.num_views * self.patches_per_view

    def visual_range(self) -> range:
        return range(self.visual_start, self.visual_start + self.num_visual)

    def present_visual(self, tokens: int) -> slice:
        """Current indices of the visual tokens left in a sequence of ``tokens`` tokens from
        which visual tokens alone were dropped (every pruning hook drops only those)."""
        return slice(self.visual_start, self.visual_start + self.num_visual - (
            self.length - tokens))

    def present_head_start(self, tokens: int) -> int:
        """``head_start`` in such a sequence (the visual tokens all come before it)."""
        return self.head_start - (self.length - tokens)


class OpenVLAOFT(nn.Module):
    """The model (no pruning logic here: see decoder.py / policy.py)."""

    def __init__(self, cfg: VLAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_backbone = VisionBackbone(
            cfg.timm_model_ids, cfg.image_size, cfg.timm_override_act_layers,
            cfg.timm_overrides, cfg.num_images)
        llm_cfg = LlamaConfig(**cfg.text_config)
        llm_cfg._attn_implementation = "sdpa"
        self.language_model = LlamaForCausalLM(llm_cfg)
        for layer in self.language_model.model.layers:
            layer.self_attn.is_causal = False  # bidirectional, as in the OFT fork
        llm_dim = llm_cfg.hidden_size
        self.projector = FusedProjector(self.vision_backbone.embed_dim, llm_dim)
        self.proprio_projector = (
            ProprioProjector(llm_dim, cfg.proprio_dim) if cfg.proprio_dim else None)
        self.action_head = L1RegressionActionHead(llm_dim, llm_dim, cfg.action_dim, cfg.chunk)

    @property
    def decoder(self) -> nn.Module:
        return self.language_model.model

    @property
    def num_layers(self) -> int:
        return len(self.decoder.layers)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 6*views, H, W) -> projected patch tokens (B, views*P, llm)."""
        return self.projector(self.vision_backbone(pixel_values))

    def build_sequence(self, patch_tokens: torch.Tensor, proprio: Optional[torch.Tensor],
                       prompt_ids: torch.Tensor) -> torch.Tensor:
        """Assemble the multimodal input embeddings (B, T, llm); prompt_ids starts with BOS."""
        embed = self.decoder.embed_tokens
        b = patch_tokens.shape[0]
        text = embed(prompt_ids)  # (B, n_prompt, llm)
        slots = text.new_zeros(b, self.cfg.num_action_slots, text.shape[-1])
        stop = embed(torch.full((b, 1), self.cfg.stop_token_id, device=text.device))
        parts = [text[:, :1], patch_tokens]
        if self.proprio_projector is not None:
            if proprio is None:
                raise ValueError("this model expects a proprio state")
            parts.append(self.proprio_projector(proprio).unsqueeze(1))
        parts += [text[:, 1:], slots, stop]
        return torch.cat(parts, dim=1)

    def layout(self, num_prompt_ids: int, query_ids: Sequence[int]) -> SequenceLayout:
        """Layout for a prompt of num_prompt_ids ids (BOS included); query_ids index it."""
        per_view = self.vision_backbone.num_patches
        num_visual = per_view * self.cfg.num_images
        num_patches = num_visual + (1 if self.proprio_projector is not None else 0)
        num_prompt = num_prompt_ids - 1  # the reference's NUM_PROMPT_TOKENS (BOS excluded)
        length = 1 + num_patches + num_prompt + self.cfg.num_action_slots + 1
        offset = num_patches  # prompt id j (j >= 1) sits at position j + num_patches
        return SequenceLayout(
            length=length, num_views=self.cfg.num_images, patches_per_view=per_view,
            visual_start=1, head_start=num_patches + num_prompt,
            num_head_positions=self.cfg.num_action_slots,
            query_positions=tuple(int(j) + offset for j in query_ids))

    def predict_normalized(self, head_hidden: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states of the head positions -> actions in [-1, 1] space."""
        return self.action_head(head_hidden)
