"""Patch labels from object boxes: a box recorded in a stored frame (fractions of the
frame, e.g. ``specprune_ros.sim.patch_projection.protocol_box``) -> the model's input
(resize, the augmentation's roll, the centre crop resized back) -> the patch grid. numpy
only; pixel coordinates are continuous (pixel column j covers [j, j + 1))."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def to_model_frame(boxes: np.ndarray, size: int, crop_top: int, crop_side: int,
                   shift: np.ndarray = np.zeros(2)) -> np.ndarray:
    """(..., 4) normalised boxes -> pixels of the model's input (``size`` square): resized,
    rolled by ``shift`` = (..., 2) (dy, dx) as the augmentation rolls the frame, then
    the centre crop (``crop_top``, ``crop_side``: processing.center_crop_box) resized back
    to ``size``. NaN boxes stay NaN."""
    b = np.asarray(boxes, dtype=np.float64) * size
    dy_dx = np.asarray(shift, dtype=np.float64)
    offset = np.stack([dy_dx[..., 1], dy_dx[..., 0]], axis=-1)  # (..., 2) as (x, y)
    b = b + np.concatenate([offset, offset], axis=-1)
    return (b - crop_top) * (size / crop_side)


def box_patch_labels(boxes: np.ndarray, size: int, grid: int, min_cover: float,
                     order: Sequence[int] = ()) -> np.ndarray:
    """(..., K, 4) boxes in model pixels -> (..., grid * grid) int labels, row-major:
    0 none, 1 + k box k. A cell is box k's when the box covers at least ``min_cover`` of
    the cell or holds the cell containing the box's centre; where boxes overlap, the
    earlier in ``order`` wins (default 0..K-1: the task's object over its target)."""
    b = np.asarray(boxes, dtype=np.float64)
    if size % grid:
        raise ValueError(f"image size {size} is not a multiple of the patch grid {grid}")
    cell = size / grid
    edges = np.arange(grid) * cell  # (g,) cell starts
    # overlap of each box with each cell row / column, as a fraction of the cell side
    x = np.clip(np.minimum(b[..., 2:3], edges + cell) - np.maximum(b[..., 0:1], edges), 0,
                None) / cell  # (..., K, g)
    y = np.clip(np.minimum(b[..., 3:4], edges + cell) - np.maximum(b[..., 1:2], edges), 0,
                None) / cell
    cover = y[..., :, None] * x[..., None, :]  # (..., K, g, g)
    hit = cover >= min_cover
    centre = (b[..., :2] + b[..., 2:]) / 2  # (..., K, 2)
    inside = np.all((centre >= 0) & (centre < size), axis=-1)
    col = np.clip(np.floor(np.nan_to_num(centre[..., 0]) / cell), 0, grid - 1).astype(int)
    row = np.clip(np.floor(np.nan_to_num(centre[..., 1]) / cell), 0, grid - 1).astype(int)
    hit |= inside[..., None, None] & (np.arange(grid)[:, None] == row[..., None, None]) \
        & (np.arange(grid)[None, :] == col[..., None, None])
    hit &= np.all(np.isfinite(b), axis=-1)[..., None, None]
    labels = np.zeros(b.shape[:-2] + (grid, grid), dtype=np.int64)
    for k in reversed(order or range(b.shape[-2])):
        labels[hit[..., k, :, :]] = k + 1
    return labels.reshape(b.shape[:-2] + (grid * grid,))
