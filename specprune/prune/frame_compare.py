"""V_dynamic: which image patches changed since an earlier frame (raw-pixel cosine).

Every function takes one view (H, W, C) or all views stacked (V, H, W, C): the policy
compares every view of two frames in one batch of tensor operations."""
from __future__ import annotations

from typing import Callable, Optional

import torch

COSINE_EPS = 1e-6  # as torch.nn.functional.cosine_similarity's default: norms clamped here


def patch_vectors(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(..., H, W, C) image(s) -> (..., grid*grid, patch*patch*C) float patch vectors,
    row-major grid."""
    *lead, h, w, c = image.shape
    gh, gw = h // patch, w // patch
    x = image[..., : gh * patch, : gw * patch, :]
    x = x.reshape(*lead, gh, patch, gw, patch, c).transpose(-4, -3)  # (..., gh, gw, p, p, C)
    # regroup the pixels before converting them: the strided copy of 1-byte pixels is
    # ~15x cheaper than of 4-byte floats (uint8 frames; the values are the same)
    return x.reshape(*lead, gh * gw, patch * patch * c).float()


def unit_patch_vectors(image: torch.Tensor, patch: int) -> torch.Tensor:
    """Patch vectors divided by their norms (clamped at ``COSINE_EPS``)."""
    x = patch_vectors(image, patch)
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(COSINE_EPS)
    # from a uint8 (any non-float32) frame x is a fresh tensor: normalised in place
    return x / norm if image.dtype == torch.float32 else x.div_(norm)


class FramePatches:
    """One camera frame (one view, or every view stacked); its unit patch vectors are built
    on first use and kept, so a frame compared with several later ones is reshaped and
    normalised once."""

    def __init__(self, image: torch.Tensor, patch: int) -> None:
        self.image, self.patch = image, patch
        self._units: Optional[torch.Tensor] = None

    def units(self) -> torch.Tensor:
        if self._units is None:
            self._units = unit_patch_vectors(self.image, self.patch)
        return self._units


def frame_similarity(current: FramePatches, previous: FramePatches) -> torch.Tensor:
    """Cosine similarity per patch between two frames -> (num_patches,), or
    (views, num_patches) for stacked views."""
    return (current.units() * previous.units()).sum(dim=-1)


def _ranked_mask(similarity: torch.Tensor, k: int, largest: bool,
                 passes: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """(views, P) similarities -> (views, P) mask of each view's k most (``largest``) or
    least similar patches whose similarity ``passes``."""
    mask = torch.zeros_like(similarity, dtype=torch.bool)
    k = min(k, similarity.shape[-1])
    if k > 0:
        values, idx = torch.topk(similarity, k, dim=-1, largest=largest)
        mask.scatter_(-1, idx, passes(values))
    return mask


def changed_mask(similarity: torch.Tensor, k: int, static_threshold: float) -> torch.Tensor:
    """(views, P) similarities -> (views * P,) mask of each view's k least-similar patches
    whose similarity is below the threshold (the ICML V_dynamic)."""
    return _ranked_mask(similarity, k, False, lambda v: v < static_threshold).view(-1)


def not_static_mask(similarity: torch.Tensor, static_k: int,
                    static_threshold: float) -> torch.Tensor:
    """(views, P) similarities -> (views * P,) mask of every patch that is not static; the
    static ones are each view's ``static_k`` most similar at or above the threshold (the
    released code's V_dynamic: everything that may have changed)."""
    return ~_ranked_mask(similarity, static_k, True, lambda v: v >= static_threshold).view(-1)
