"""Where an object shows in the policy's patch grid: camera projection and the frame
arithmetic of the LIBERO protocol, in numpy only (no torch, no ROS).

The chain, in continuous pixel coordinates (pixel column j covers [j, j + 1)):

1. world -> camera frame with the camera's pose (``extrinsics``: x right, y down, z forward,
   as the LIBERO worker's ``cameras`` reports it) -> the upright image with the pinhole
   ``intrinsics`` (``project_points``);
2. upright -> the protocol's frame: LIBERO hands frames over bottom row first and the
   protocol rotates them 180 degrees (``libero_protocol.flip_180``), so what the policy sees
   is the upright image mirrored left to right (``upright_to_protocol``);
3. the recorded frame -> the model's input (resize, augmentation shift, centre crop) -> the
   patch grid: ``specprune.train.patch_boxes``, where training reads the recordings.

Recordings keep step 2's result as boxes normalised by the frame size (``protocol_box``),
so the labels follow whatever model size, crop and shift a training run uses.
"""
from __future__ import annotations

from typing import Tuple

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
