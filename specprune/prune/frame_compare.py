"""V_dynamic: which image patches changed since an earlier frame (raw-pixel cosine)."""
from __future__ import annotations

from typing import Optional

import torch

COSINE_EPS = 1e-6  # as torch.nn.functional.cosine_similarity's default: norms clamped here


def patch_vectors(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(H, W, C) image -> (grid*grid, patch*patch*C) float patch vectors, row-major grid."""
    h, w, c = image.shape
    gh, gw = h // patch, w // patch
    x = image[: gh * patch, : gw * patch].float()
    x = x.reshape(gh, patch, gw, patch, c).permute(0, 2, 1, 3, 4)  # (gh, gw, p, p, C)
    return x.reshape(gh * gw, patch * patch * c)


def unit_patch_vectors(image: torch.Tensor, patch: int) -> torch.Tensor:
    """Patch vectors divided by their norms (clamped at ``COSINE_EPS``)."""
    x = patch_vectors(image, patch)
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(COSINE_EPS)


class FramePatches:
    """One camera frame; its unit patch vectors are built on first use and kept, so a frame
    compared with several later ones is reshaped and normalised once."""

    def __init__(self, image: torch.Tensor, patch: int) -> None:
        self.image, self.patch = image, patch
        self._units: Optional[torch.Tensor] = None

    def units(self) -> torch.Tensor:
        if self._units is None:
            self._units = unit_patch_vectors(self.image, self.patch)
        return self._units


def frame_similarity(current: FramePatches, previous: FramePatches) -> torch.Tensor:
    """Cosine similarity per patch between two frames -> (num_patches,)."""
    return (current.units() * previous.units()).sum(dim=1)


def changed_patches(similarity: torch.Tensor, k: int, static_threshold: float) -> torch.Tensor:
    """Indices of the k least-similar patches whose similarity is below the threshold."""
    if k <= 0:
        return similarity.new_zeros(0, dtype=torch.long)
    k = min(k, similarity.numel())
    values, idx = torch.topk(similarity, k, largest=False)
    return idx[values < static_threshold]
