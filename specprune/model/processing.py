"""Input checks and the OpenVLA-OFT pre/post-processing (kept out of the model).

Images: RGB uint8 (H, W, 3) -> resize to the model size -> optional centre crop of
``center_crop_scale`` of the area resized back (LIBERO evaluation) -> per backbone
mean/std -> 6 channels per view (DINOv2 then SigLIP). Two pipelines, named by the
model config's ``image_pipeline``:

- ``reference`` (PIPELINE_REFERENCE): the pixels of openvla-oft's ``openvla_utils.py``,
  exactly: frames of another size go through a JPEG round trip (quality 95) and TF's
  antialiased lanczos3 resize; the crop is TF's crop_and_resize (bilinear, box corners
  over size - 1) followed by a uint8 round trip. See image_ops.py. Released checkpoints.
- ``torch`` (PIPELINE_TORCH): torch's antialiased bicubic resize (no JPEG) and an
  integer 213-px crop resized back with torch bilinear, kept in float. What specprune's
  own training feeds (the default of ``pixel_values``), so what its checkpoints learnt.

Proprio and actions use the checkpoint's dataset statistics: BOUNDS_Q99 (q01/q99,
LIBERO) or BOUNDS (min/max, ALOHA), with the mask.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from specprune.model import image_ops
from specprune.model.layouts import BOUNDS, BOUNDS_Q99

_STAT_KEYS = {BOUNDS_Q99: ("q01", "q99"), BOUNDS: ("min", "max")}
PIPELINE_REFERENCE, PIPELINE_TORCH = "reference", "torch"
PIPELINES = (PIPELINE_REFERENCE, PIPELINE_TORCH)


def check_image(image: Any, view: int) -> np.ndarray:
    """The observation's image for ``view`` as (H, W, 3) uint8, or a ValueError saying why."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"view {view}: image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"view {view}: image dtype must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"view {view}: image must be (H, W, 3) RGB, got shape {image.shape}")
    if image.shape[0] < 14 or image.shape[1] < 14:
        raise ValueError(f"view {view}: image {image.shape[:2]} is smaller than one patch")
    return image


def check_pipeline(pipeline: str) -> str:
    if pipeline not in PIPELINES:
        raise ValueError(f"image pipeline must be one of {', '.join(PIPELINES)}, "
                         f"got {pipeline!r}")
    return pipeline


def resize_frame(image: np.ndarray, size: int, pipeline: str = PIPELINE_TORCH) -> torch.Tensor:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 tensor (no-op when already that size)."""
    t = torch.from_numpy(np.ascontiguousarray(image))
    if t.shape[0] == size and t.shape[1] == size:
        return t
    if check_pipeline(pipeline) == PIPELINE_REFERENCE:
        jpeg = image_ops.jpeg_round_trip(np.ascontiguousarray(image))
        return torch.from_numpy(image_ops.resize_lanczos3(jpeg, size, size))
    x = t.permute(2, 0, 1).unsqueeze(0).float()
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0)


def center_crop_box(size: int, scale: float) -> Tuple[int, int]:
    """(top = left offset, side) of the torch pipeline's centre crop keeping ``scale`` of
    an S x S area (the reference pipeline samples between non-integer corners)."""
    side = int(round(size * math.sqrt(scale)))
    return (size - side) // 2, side


def _center_crop(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(1, 3, S, S) float: crop the centre ``scale`` of the area and resize back to S."""
    if scale >= 1.0:
        return x
    size = x.shape[-1]
    top, side = center_crop_box(size, scale)
    crop = x[..., top:top + side, top:top + side]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


def _reference_crop(frame: torch.Tensor, scale: float) -> torch.Tensor:
    """(S, S, 3) uint8 -> (S, S, 3) uint8: TF crop_and_resize of the centred box."""
    if scale >= 1.0:
        return frame
    size = frame.shape[0]
    crop = image_ops.crop_and_resize(image_ops.uint8_to_float(frame.numpy()),
                                     image_ops.center_crop_box(scale), size, size)
    return torch.from_numpy(image_ops.float_to_uint8(crop))


def pixel_values(frames: Sequence[torch.Tensor], means: Sequence[Tuple[float, ...]],
                 stds: Sequence[Tuple[float, ...]], crop_scale: float,
                 pipeline: str = PIPELINE_TORCH) -> torch.Tensor:
    """Model-size uint8 frames -> (1, 6 * views, S, S) float pixel values."""
    reference = check_pipeline(pipeline) == PIPELINE_REFERENCE
    views: List[torch.Tensor] = []
    for frame in frames:
        if reference:
            frame = _reference_crop(frame, crop_scale)
        x = frame.permute(2, 0, 1).unsqueeze(0).float() / 255.0  # (1, 3, S, S)
        if not reference:
            x = _center_crop(x, crop_scale)
        for mean, std in zip(means, stds):
            m = torch.tensor(mean).view(1, 3, 1, 1)
            s = torch.tensor(std).view(1, 3, 1, 1)
            views.append((x - m) / s)
    return torch.cat(views, dim=1)


def _bounds(stats: Dict[str, Any], kind: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo_key, hi_key = _STAT_KEYS[kind]
    lo, hi = np.asarray(stats[lo_key], np.float64), np.asarray(stats[hi_key], np.float64)
    mask = np.asarray(stats.get("mask", np.ones_like(lo, dtype=bool)), dtype=bool)
    return lo, hi, mask


def normalize_proprio(proprio: np.ndarray, stats: Dict[str, Any], kind: str) -> np.ndarray:
    """Raw state -> [-1, 1] (clipped), masked dimensions passed through."""
    lo, hi, mask = _bounds(stats, kind)
    scaled = 2.0 * (proprio - lo) / (hi - lo + 1e-8) - 1.0
    return np.clip(np.where(mask, scaled, proprio), -1.0, 1.0)


def unnormalize_actions(actions: np.ndarray, stats: Dict[str, Any], kind: str) -> np.ndarray:
    """[-1, 1] actions -> robot units, masked dimensions (e.g. the gripper) passed through."""
    lo, hi, mask = _bounds(stats, kind)
    return np.where(mask, 0.5 * (actions + 1.0) * (hi - lo + 1e-8) + lo, actions)


def check_proprio(proprio: Any, dim: int) -> np.ndarray:
    if proprio is None:
        raise ValueError(f"this model needs a proprio state of {dim} values, got None")
    arr = np.asarray(proprio, dtype=np.float64).reshape(-1)
    if arr.shape[0] != dim:
        raise ValueError(f"proprio must have {dim} values, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"proprio contains non-finite values: {arr.tolist()}")
    return arr
