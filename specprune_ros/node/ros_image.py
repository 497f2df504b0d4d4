"""numpy RGB images <-> sensor_msgs/Image and sensor_msgs/CompressedImage.

The byte-level functions (``decode_raw``, ``encode_raw``, ``decode_compressed``,
``encode_compressed``) need no ROS at all; ``image_msg_to_rgb``, ``rgb_to_image_msg``,
``compressed_msg_to_rgb`` and ``rgb_to_compressed_msg`` wrap them for the message types,
which are imported only when called. Every function takes or returns an (H, W, 3) uint8 RGB
array and raises ValueError with a readable reason on anything else.

When the ROS 2 ``cv_bridge`` package is importable it decodes 8-bit raw Image messages (after
the same validation); otherwise the numpy conversion below does, with identical results.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CompressedImage, Image


@dataclass(frozen=True)
class _Encoding:
    """Layout of one sensor_msgs/Image encoding: channel order and bytes per channel."""

    channels: str  # e.g. "rgb", "bgra", "l" (luminance)
    depth_bytes: int

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes of one pixel (all channels)."""
        return len(self.channels) * self.depth_bytes


#: Encodings accepted when decoding (names from sensor_msgs/image_encodings.hpp).
DECODABLE: Dict[str, _Encoding] = {
    "rgb8": _Encoding("rgb", 1), "bgr8": _Encoding("bgr", 1),
    "rgba8": _Encoding("rgba", 1), "bgra8": _Encoding("bgra", 1),
    "mono8": _Encoding("l", 1),
    "rgb16": _Encoding("rgb", 2), "bgr16": _Encoding("bgr", 2), "mono16": _Encoding("l", 2),
}
#: Encodings produced when encoding an RGB array.
ENCODABLE: Tuple[str, ...] = ("rgb8", "bgr8", "mono8")
#: CompressedImage formats: a token in ``format`` (e.g. "rgb8; jpeg compressed bgr8").
COMPRESSED_FORMATS: Tuple[str, ...] = ("jpeg", "png")


def _load_cv_bridge() -> Optional[Any]:
    """A working ROS 2 CvBridge, or None where cv_bridge is absent, broken or disagrees."""
    try:
        from cv_bridge import CvBridge  # ROS 2 package; PyPI's "cv-bridge" is a ROS 1 port

        bridge = CvBridge()
        probe = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
        decoded = bridge.imgmsg_to_cv2(rgb_to_image_msg(probe, "bgr8"), desired_encoding="rgb8")
        return bridge if np.array_equal(np.asarray(decoded), probe) else None
    except Exception:  # noqa: BLE001 - any failure means: use the numpy conversion
        return None


_CV_BRIDGE_STATE: Dict[str, Optional[Any]] = {}


def _cv_bridge() -> Optional[Any]:
    """The CvBridge to decode with (loaded and self-tested on first use), or None."""
    if "bridge" not in _CV_BRIDGE_STATE:
        _CV_BRIDGE_STATE["bridge"] = _load_cv_bridge()
    return _CV_BRIDGE_STATE["bridge"]


# ---------------------------------------------------------------------------- validation
def check_rgb(rgb: Any) -> np.ndarray:
    """Return ``rgb`` as a C-contiguous (H, W, 3) uint8 array or raise ValueError."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _encoding(name: str, table: Dict[str, _Encoding]) -> _Encoding:
    """The layout of encoding ``name``; ValueError naming it and the supported ones."""
    if name not in table:
        raise ValueError(f"unsupported image encoding {name!r}; supported: {sorted(table)}")
    return table[name]


def _check_layout(nbytes: int, height: int, width: int, step: int, enc: _Encoding,
                  encoding: str) -> None:
    """Raise ValueError unless sizes, row step and buffer length are consistent."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    row_bytes = width * enc.bytes_per_pixel
    if step < row_bytes:
        raise ValueError(f"step {step} is smaller than a {width}-pixel {encoding} row "
                         f"({row_bytes} bytes)")
    if nbytes != step * height:
        raise ValueError(f"{encoding} buffer has {nbytes} bytes, expected step*height = "
                         f"{step}*{height} = {step * height} for a {width}x{height} image")


# ---------------------------------------------------------------------------- raw bytes
def _to_rgb(pixels: np.ndarray, channels: str) -> np.ndarray:
    """(H, W, C) pixels in ``channels`` order -> (H, W, 3) RGB, same dtype."""
    if channels == "l":
        return np.repeat(pixels, 3, axis=2)
    order = [channels.index(c) for c in "rgb"]
    return pixels[:, :, order]


def decode_raw(data: Any, height: int, width: int, encoding: str, step: int,
               is_bigendian: bool = False) -> np.ndarray:
    """Raw image bytes in any DECODABLE encoding -> (H, W, 3) uint8 RGB.

    Row padding (``step`` > width * bytes per pixel) is dropped; 16-bit channels are read with
    the given byte order and scaled to 8 bits (top byte); alpha is dropped; mono is replicated.
    """
    enc = _encoding(encoding, DECODABLE)
    buf = np.frombuffer(data, dtype=np.uint8)
    _check_layout(buf.size, height, width, step, enc, encoding)
    rows = buf.reshape(height, step)[:, :width * enc.bytes_per_pixel]
    if enc.depth_bytes == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        values = np.ascontiguousarray(rows).view(dtype)
        pixels = (values >> 8).astype(np.uint8)
    else:
        pixels = rows
    pixels = pixels.reshape(height, width, len(enc.channels))
    return np.ascontiguousarray(_to_rgb(pixels, enc.channels))


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (H, W) uint8, exact for grey pixels (R = G = B)."""
    weights = np.array([299, 587, 114], dtype=np.uint32)
    return ((rgb.astype(np.uint32) @ weights + 500) // 1000).astype(np.uint8)


def encode_raw(rgb: Any, encoding: str = "rgb8") -> Tuple[bytes, int]:
    """(H, W, 3) uint8 RGB -> (bytes, step) in rgb8, bgr8 or mono8, rows unpadded."""
    if encoding not in ENCODABLE:
        raise ValueError(f"cannot encode to {encoding!r}; supported: {list(ENCODABLE)}")
    arr = check_rgb(rgb)
    if encoding == "bgr8":
        arr = np.ascontiguousarray(arr[:, :, ::-1])
    elif encoding == "mono8":
        arr = rgb_to_gray(arr)
    row_bytes = arr.shape[1] * (1 if encoding == "mono8" else 3)
    return arr.tobytes(), row_bytes


# ---------------------------------------------------------------------------- compressed
def _compressed_kind(fmt: str) -> str:
    """'jpeg' or 'png' from a CompressedImage.format string; ValueError otherwise."""
    lowered = fmt.lower()
    if "png" in lowered:
        return "png"
    if "jpeg" in lowered or "jpg" in lowered:
        return "jpeg"
    raise ValueError(f"unsupported CompressedImage format {fmt!r}; "
                     f"supported: {list(COMPRESSED_FORMATS)}")


def _import_cv2() -> Optional[Any]:
    """OpenCV, or None where it is not installed (PIL is used instead)."""
    try:
        import cv2

        return cv2
    except ImportError:
        return None


#: the most pixels a compressed frame may declare: 16.8 MP, twice a 4K camera's. A header
#: claiming more (a corrupt or hostile message) is refused before anything is allocated:
#: OpenCV would reserve the whole image first (up to 2^30 pixels, 3 GB) and raises its own
#: cv2.error beyond that
MAX_COMPRESSED_PIXELS = 4096 * 4096


def _refuse_oversized(data: bytes, kind: str) -> None:
    """ValueError when the JPEG / PNG header declares more than MAX_COMPRESSED_PIXELS (PIL
    reads the header only); an unreadable header is left to the decoder."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                width, height = img.size
    except PILImage.DecompressionBombError as exc:  # PIL's own limit, 2 x 89 MP
        raise ValueError(f"{kind} header declares too many pixels: {exc}") from None
    except Exception:  # noqa: BLE001 - PIL raises many types for corrupt data
        return
    if width * height > MAX_COMPRESSED_PIXELS:
        raise ValueError(f"{kind} header declares {width}x{height} pixels, more than "
                         f"{MAX_COMPRESSED_PIXELS} (corrupt, or not a camera frame)")


def _decode_with_cv2(cv2: Any, buf: np.ndarray) -> Optional[np.ndarray]:
    """Decoded RGB image, or None where cv2 cannot decode the bytes."""
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # BGR, alpha dropped, grey replicated
    except cv2.error:  # e.g. a header beyond CV_IO_MAX_IMAGE_PIXELS
        return None
    return None if img is None else np.ascontiguousarray(img[:, :, ::-1])


def _decode_with_pil(data: bytes) -> Optional[np.ndarray]:
    """Decoded RGB image, or None where PIL cannot decode the bytes."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    except Exception:  # noqa: BLE001 - PIL raises many types for corrupt data
        return None


def decode_compressed(data: Any, fmt: str = "jpeg") -> np.ndarray:
    """JPEG or PNG bytes -> (H, W, 3) uint8 RGB (cv2 when importable, else PIL)."""
    kind = _compressed_kind(fmt)
    raw = bytes(data)
    if not raw:
        raise ValueError(f"empty {kind} buffer")
    _refuse_oversized(raw, kind)
    cv2 = _import_cv2()
    if cv2 is not None:
        img = _decode_with_cv2(cv2, np.frombuffer(raw, dtype=np.uint8))
    else:
        img = _decode_with_pil(raw)
    if img is None:
        raise ValueError(f"could not decode {len(raw)} bytes as {kind} (format {fmt!r})")
    return img


def encode_compressed(rgb: Any, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG (``quality`` 1-100) or PNG bytes."""
    kind = _compressed_kind(fmt)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg quality must be in [1, 100], got {quality}")
    arr = check_rgb(rgb)
    cv2 = _import_cv2()
    if cv2 is not None:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
        ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", arr[:, :, ::-1], params)
        if not ok:
            raise ValueError(f"cv2 could not encode a {arr.shape} image as {kind}")
        return buf.tobytes()
    from PIL import Image as PILImage

    out = io.BytesIO()
    options = {"quality": int(quality)} if kind == "jpeg" else {}
    PILImage.fromarray(arr).save(out, format="JPEG" if kind == "jpeg" else "PNG", **options)
    return out.getvalue()


# ---------------------------------------------------------------------------- messages
def _fill_header(msg: Any, stamp: Optional["Time"], frame_id: str) -> None:
    """Set header.stamp (when given) and header.frame_id."""
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id


def image_msg_to_rgb(msg: "Image") -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB; ValueError on a bad encoding or size."""
    enc = _encoding(msg.encoding, DECODABLE)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    _check_layout(data.size, msg.height, msg.width, msg.step, enc, msg.encoding)
    bridge = _cv_bridge() if enc.depth_bytes == 1 else None
    if bridge is not None:
        return check_rgb(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    return decode_raw(data, msg.height, msg.width, msg.encoding, msg.step,
                      bool(msg.is_bigendian))


def rgb_to_image_msg(rgb: Any, encoding: str = "rgb8", stamp: Optional["Time"] = None,
                     frame_id: str = "") -> "Image":
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in rgb8, bgr8 or mono8."""
    from sensor_msgs.msg import Image

    arr = check_rgb(rgb)
    data, step = encode_raw(arr, encoding)
    msg = Image()
    _fill_header(msg, stamp, frame_id)
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = data
    return msg


def compressed_msg_to_rgb(msg: "CompressedImage") -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB."""
    return decode_compressed(msg.data, msg.format)


def rgb_to_compressed_msg(rgb: Any, fmt: str = "jpeg", quality: int = 90,
                          stamp: Optional["Time"] = None,
                          frame_id: str = "") -> "CompressedImage":
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage, format as image_transport writes."""
    from sensor_msgs.msg import CompressedImage

    kind = _compressed_kind(fmt)
    msg = CompressedImage()
    _fill_header(msg, stamp, frame_id)
    # compressed_image_transport's convention: "<original encoding>; <kind> compressed bgr8"
    msg.format = f"rgb8; {kind} compressed bgr8"
    msg.data = encode_compressed(rgb, kind, quality)
    return msg
