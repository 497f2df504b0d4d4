"""The image ops of the OpenVLA-OFT reference pre-processing, in numpy, pixel-exact.

The reference (openvla-oft ``experiments/robot/openvla_utils.py``) uses TensorFlow:
``tf.image.resize(..., "lanczos3", antialias=True)`` after a JPEG round trip for frames
that are not 224 x 224, and ``tf.image.crop_and_resize`` (bilinear) for the centre crop.
These functions follow the CPU kernels of those ops step by step in float32 (the same
operations in the same order, so the same roundings) and need no TensorFlow:

- ``crop_and_resize``: box corners in normalised coordinates mapped over ``size - 1``
  (a crop of 90 % of the area samples its first pixel at ~5.72 px of a 224 frame),
  bilinear lerps top then bottom, then between them;
- ``resize_lanczos3``: TF's ScaleAndTranslate: per output pixel a window of the Lanczos-3
  kernel stretched by the downscale factor (antialias), weights normalised to sum 1,
  rows then columns, sequential float32 sums;
- ``float_to_uint8`` / ``uint8_to_float``: ``tf.image.convert_image_dtype`` (x * 255.5
  truncated on the way back, x * float32(1/255) on the way in);
- ``jpeg_round_trip``: encode at quality 95 with 4:2:0 chroma (Pillow: the same bytes as
  TF's encode_jpeg) and decode as TF's decode_image does: libjpeg-turbo with the fast
  integer IDCT (TF's default, JDCT_IFAST) and fancy upsampling, through simplejpeg.
  Pillow cannot select the IDCT (its decode differs from TF's by 1.0 grey level on
  average, up to 7-10, on the parity frames), hence the second library.

Golden values produced by TensorFlow itself back these claims: test/test_parity.py.
"""
from __future__ import annotations

import io
from typing import Tuple

import numpy as np
from PIL import Image

F32 = np.float32
_PI = F32(3.14159265359)  # the kernel's own constant, rounded to float32 as in TF
_LANCZOS_RADIUS = F32(3.0)


def uint8_to_float(image: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 -> float32 in [0, 1]: cast, then times float32(1 / 255)."""
    return image.astype(F32) * F32(1.0 / 255.0)


def float_to_uint8(image: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] (clipped) -> uint8: times 255.5, saturated, truncated."""
    scaled = np.clip(image, F32(0.0), F32(1.0)) * F32(255.5)
    return np.clip(scaled, F32(0.0), F32(255.0)).astype(np.uint8)


def center_crop_box(scale: float) -> Tuple[float, float, float, float]:
    """(y1, x1, y2, x2) of the centred square keeping ``scale`` of the area (float32)."""
    side = np.clip(np.sqrt(F32(scale)), F32(0.0), F32(1.0))
    offset = (F32(1.0) - side) / F32(2.0)
    return offset, offset, offset + side, offset + side


def _axis_samples(lo: np.float32, hi: np.float32, size: int, out: int) -> np.ndarray:
    """Input coordinates of the ``out`` bilinear samples between box corners lo and hi."""
    if out == 1:
        return np.array([F32(0.5) * (lo + hi) * F32(size - 1)], F32)
    step = (hi - lo) * F32(size - 1) / F32(out - 1)
    return lo * F32(size - 1) + np.arange(out, dtype=F32) * step


def crop_and_resize(image: np.ndarray, box: Tuple[float, float, float, float],
                    out_h: int, out_w: int) -> np.ndarray:
    """(H, W, C) float32 -> (out_h, out_w, C) float32, bilinear; outside samples are 0."""
    h, w = image.shape[:2]
    y1, x1, y2, x2 = (F32(v) for v in box)
    in_y = _axis_samples(y1, y2, h, out_h)  # (out_h,)
    in_x = _axis_samples(x1, x2, w, out_w)  # (out_w,)
    top, left = np.floor(in_y), np.floor(in_x)
    y_lerp = (in_y - top)[:, None, None]  # (out_h, 1, 1)
    x_lerp = (in_x - left)[None, :, None]  # (1, out_w, 1)
    t = np.clip(top, 0, h - 1).astype(np.int64)
    b = np.clip(np.ceil(in_y), 0, h - 1).astype(np.int64)
    lf = np.clip(left, 0, w - 1).astype(np.int64)
    r = np.clip(np.ceil(in_x), 0, w - 1).astype(np.int64)
    # TF lerps each sample's top row and bottom row along x, then between them; the
    # x-lerp of an input row is the same for every sample that reads it: do it once
    left_cols = image[:, lf]  # (H, out_w, C)
    rows = left_cols + (image[:, r] - left_cols) * x_lerp
    upper, lower = rows[t], rows[b]  # (out_h, out_w, C)
    out = upper + (lower - upper) * y_lerp
    inside_y = (in_y >= 0) & (in_y <= h - 1)
    inside_x = (in_x >= 0) & (in_x <= w - 1)
    if not (inside_y.all() and inside_x.all()):
        out = np.where((inside_y[:, None] & inside_x[None, :])[..., None], out, F32(0.0))
    return out.astype(F32, copy=False)


def _lanczos3(x: np.ndarray) -> np.ndarray:
    """TF's Lanczos-3 kernel at float32 distances x >= 0 (sin in float64, rounded)."""
    px = _PI * x
    sin_px = np.sin(px.astype(np.float64)).astype(F32)
    sin_px3 = np.sin((px / _LANCZOS_RADIUS).astype(np.float64)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = _LANCZOS_RADIUS * sin_px * sin_px3 / ((_PI * _PI) * x * x)
    value = np.where(x > _LANCZOS_RADIUS, F32(0.0), value)
    return np.where(x.astype(np.float64) <= 1e-3, F32(1.0), value).astype(F32)


def lanczos3_spans(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(starts (out,), weights (out, span)) of TF's antialiased Lanczos-3 resampling."""
    scale = F32(out_size) / F32(in_size)
    inv_scale = F32(1.0 / float(scale))
    kernel_scale = max(inv_scale, F32(1.0))
    reach = _LANCZOS_RADIUS * kernel_scale
    span = min(2 * int(np.ceil(reach)) + 1, in_size)
    sample = (np.arange(out_size, dtype=F32) + F32(0.5)) * inv_scale  # (out,)
    start = np.clip(np.ceil(sample - reach - F32(0.5)), 0, in_size - 1).astype(np.int64)
    end = np.clip(np.floor(sample + reach - F32(0.5)), 0, in_size - 1).astype(np.int64) + 1
    source = start[:, None] + np.arange(span)[None, :]  # (out, span)
    pos = (source.astype(F32) + F32(0.5)) - sample[:, None]
    weights = _lanczos3(np.abs(pos * (F32(1.0) / kernel_scale)))
    weights = np.where(source < end[:, None], weights, F32(0.0))
    total = np.zeros(out_size, F32)
    for j in range(span):  # sequential float32 sum, as the kernel adds them
        total = total + weights[:, j]
    ok = np.abs(total) >= F32(1000.0) * np.finfo(F32).tiny
    inv_total = np.where(ok, F32(1.0) / np.where(ok, total, F32(1.0)), F32(0.0))
    return start, (weights * inv_total[:, None]).astype(F32)


def _gather_axis0(image: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """out[i] = sum_j weights[i, j] * image[starts[i] + j], summed in order (float32)."""
    last = image.shape[0] - 1
    out = np.zeros((len(starts),) + image.shape[1:], F32)
    for j in range(weights.shape[1]):
        rows = image[np.minimum(starts + j, last)]  # zero weight past the span
        out = out + weights[:, j].reshape((-1,) + (1,) * (image.ndim - 1)) * rows
    return out


def resize_lanczos3(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(H, W, C) uint8 -> (out_h, out_w, C) uint8: TF lanczos3, antialias, round, clip."""
    src = image.astype(F32)
    row_starts, row_weights = lanczos3_spans(image.shape[0], out_h)
    col_starts, col_weights = lanczos3_spans(image.shape[1], out_w)
    rows = _gather_axis0(src, row_starts, row_weights)  # (out_h, W, C)
    cols = _gather_axis0(np.ascontiguousarray(rows.transpose(1, 0, 2)), col_starts,
                         col_weights)  # (out_w, out_h, C)
    return np.clip(np.rint(cols.transpose(1, 0, 2)), 0, 255).astype(np.uint8)


def jpeg_round_trip(image: np.ndarray, quality: int = 95) -> np.ndarray:
    """(H, W, 3) uint8 -> the same image JPEG-encoded (4:2:0) and decoded as TF does."""
    import simplejpeg  # only frames that need resizing come here

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(
        buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    return simplejpeg.decode_jpeg(buffer.getvalue(), colorspace="RGB", fastdct=True,
                                  fastupsample=False)
