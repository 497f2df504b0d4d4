"""V_dynamic: which image patches changed since an earlier frame (raw-pixel cosine)."""
from __future__ import annotations

import torch


def patch_vectors(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(H, W, C) image -> (grid*grid, patch*patch*C) float patch vectors, row-major grid."""
    h, w, c = image.shape
    gh, gw = h // patch, w // patch
    x = image[: gh * patch, : gw * patch].float()
    x = x.reshape(gh, patch, gw, patch, c).permute(0, 2, 1, 3, 4)  # (gh, gw, p, p, C)
    return x.reshape(gh * gw, patch * patch * c)


def patch_similarity(current: torch.Tensor, previous: torch.Tensor, patch: int) -> torch.Tensor:
    """Cosine similarity per patch between two (H, W, C) frames -> (num_patches,)."""
    a = patch_vectors(current, patch)
    b = patch_vectors(previous, patch)
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-6)


def changed_patches(similarity: torch.Tensor, k: int, static_threshold: float) -> torch.Tensor:
    """Indices of the k least-similar patches whose similarity is below the threshold."""
    if k <= 0:
        return similarity.new_zeros(0, dtype=torch.long)
    k = min(k, similarity.numel())
    values, idx = torch.topk(similarity, k, largest=False)
    return idx[values < static_threshold]
