"""Where an object shows in the policy's patch grid: camera projection and the frame
arithmetic of the LIBERO protocol, in numpy only (no torch, no ROS).

The chain, in continuous pixel coordinates (pixel column j covers [j, j + 1)):

1. world -> camera frame with the camera's pose (``extrinsics``: x right, y down, z forward,
   as the LIBERO worker's ``cameras`` reports it) -> the upright image with the pinhole
   ``intrinsics`` (``project_points``);
2. upright -> the protocol's frame: LIBERO hands frames over bottom row first and the
   protocol rotates them 180 degrees (``libero_protocol.flip_180``), so what the policy sees
   is the upright image mirrored left to right (``upright_to_protocol``);
3. the recorded frame -> the model's input: resized to the model size, shifted by the
   training augmentation (``torch.roll`` by ``(dy, dx)``), centre crop resized back
   (``to_model_frame``);
4. -> the patch grid, row-major (``box_patch_labels``).

Recordings keep step 2's result as boxes normalised by the frame size (``protocol_box``),
so the labels follow whatever model size, crop and shift a training run uses.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

#: Points closer than this in front of the camera (metres) are not projected.
MIN_DEPTH = 1e-3


def project_points(points: np.ndarray, intrinsics: np.ndarray,
                   extrinsics: np.ndarray) -> np.ndarray:
    """(N, 3) world points -> (N, 2) (x, y) pixels of the upright image; NaN for points
    behind (or within MIN_DEPTH of) the camera."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pose = np.asarray(extrinsics, dtype=np.float64)
    cam = (pts - pose[:3, 3]) @ pose[:3, :3]  # (N, 3) in the camera frame: R^T (p - t)
    pix = cam @ np.asarray(intrinsics, dtype=np.float64).T  # (N, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = pix[:, :2] / pix[:, 2:3]
    xy[cam[:, 2] < MIN_DEPTH] = np.nan
    return xy


def upright_to_protocol(xy: np.ndarray, width: float) -> np.ndarray:
    """(..., 2) upright-image pixels -> the protocol frame's (bottom row first, then rotated
    180 degrees: the upright image mirrored left to right)."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = width - out[..., 0]
    return out


def protocol_box(points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray,
                 size: Tuple[int, int]) -> np.ndarray:
    """(4,) (x0, y0, x1, y1) of the points' projections in the protocol frame of a
    ``size`` = (height, width) camera, in fractions of the width / height (not clipped: a
    box may reach outside [0, 1]); NaN when no point is in front of the camera."""
    height, width = size
    xy = upright_to_protocol(project_points(points, intrinsics, extrinsics), width)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if not len(xy):
        return np.full(4, np.nan)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return np.array([lo[0] / width, lo[1] / height, hi[0] / width, hi[1] / height])


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
