"""Fused DINOv2 + SigLIP vision backbone (OpenVLA-OFT's ``vision_backbone``).

Module names follow the released checkpoints: ``featurizer`` (DINOv2) and
``fused_featurizer`` (SigLIP), both timm VisionTransformers whose LayerScale parameters
are stored as ``scale_factor`` (the released checkpoints rename timm's ``gamma``).
Features come from the second-to-last block, un-normalised, prefix tokens removed, and
the two backbones' features are concatenated channel-wise.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import timm
import torch
from timm.layers import LayerScale
from torch import nn


class ScaleFactorLayerScale(nn.Module):
    """timm LayerScale with the parameter named as in OpenVLA checkpoints."""

    def __init__(self, gamma: torch.Tensor) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(gamma.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


def _rename_layer_scales(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LayerScale):
                setattr(parent, name, ScaleFactorLayerScale(child.gamma))


def create_featurizer(model_id: str, img_size: int, act_layer: Optional[str],
                      overrides: Dict[str, Any]) -> nn.Module:
    """A timm ViT as OpenVLA builds it; ``overrides`` shrink it for the tiny presets."""
    model = timm.create_model(model_id, pretrained=False, num_classes=0, img_size=img_size,
                              act_layer=act_layer, **overrides)
    _rename_layer_scales(model)
    return model


class VisionBackbone(nn.Module):
    """pixel_values (B, 6 * num_images, H, W) -> patch features (B, num_images * P, D)."""

    def __init__(self, model_ids: Sequence[str], img_size: int,
                 act_layers: Sequence[Optional[str]], overrides: Sequence[Dict[str, Any]],
                 num_images: int) -> None:
        super().__init__()
        self.featurizer = create_featurizer(model_ids[0], img_size, act_layers[0], overrides[0])
        self.fused_featurizer = create_featurizer(
            model_ids[1], img_size, act_layers[1], overrides[1])
        self.embed_dim = self.featurizer.embed_dim + self.fused_featurizer.embed_dim
        self.num_images = num_images

    @property
    def num_patches(self) -> int:
        """Patches per image."""
        return self.featurizer.patch_embed.num_patches

    @property
    def patch_size(self) -> int:
        return self.featurizer.patch_embed.patch_size[0]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        views = torch.split(pixel_values, [6] * self.num_images, dim=1)
        return torch.cat([self._one_view(v) for v in views], dim=1)  # (B, n*P, D)

    def _one_view(self, pixels: torch.Tensor) -> torch.Tensor:
        dino_px, siglip_px = torch.split(pixels, [3, 3], dim=1)
        dino = _penultimate(self.featurizer, dino_px)  # (B, P, D1)
        siglip = _penultimate(self.fused_featurizer, siglip_px)  # (B, P, D2)
        return torch.cat([dino, siglip], dim=2)


def _penultimate(vit: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    return vit.get_intermediate_layers(pixels, n={len(vit.blocks) - 2})[0]
