"""Round trips and error messages of specprune_ros.node.ros_image (no ROS graph needed)."""
import struct
import sys
import types
import warnings
import zlib

import numpy as np
import pytest

from specprune_ros.node import ros_image

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, imported by the msg packages
    from sensor_msgs.msg import CompressedImage, Image

# lark (used by rosidl at the first node / type-support load) imports the deprecated
# sre_parse / sre_constants modules.
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")


@pytest.fixture
def rgb() -> np.ndarray:
    """A 5x7 image with distinct values in every channel (odd sizes catch stride bugs)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


@pytest.fixture
def grey(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(rgb[:, :, :1], 3, axis=2)


@pytest.fixture(autouse=True)
def numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test our own conversion even where a ROS 2 cv_bridge happens to be installed."""
    monkeypatch.setattr(ros_image, "_cv_bridge", lambda: None)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_color_encodings_round_trip_exactly(rgb: np.ndarray, encoding: str) -> None:
    msg = ros_image.rgb_to_image_msg(rgb, encoding, frame_id="cam")
    assert (msg.encoding, msg.height, msg.width, msg.step) == (encoding, 5, 7, 21)
    assert msg.header.frame_id == "cam"
    np.testing.assert_array_equal(ros_image.image_msg_to_rgb(msg), rgb)


def test_bgr8_bytes_are_blue_first(rgb: np.ndarray) -> None:
    msg = ros_image.rgb_to_image_msg(rgb, "bgr8")
    assert bytes(msg.data[:3]) == bytes(rgb[0, 0, ::-1])


def test_mono8_round_trip_of_a_grey_image(grey: np.ndarray) -> None:
    msg = ros_image.rgb_to_image_msg(grey, "mono8")
    assert (msg.step, len(msg.data)) == (7, 35)
    np.testing.assert_array_equal(ros_image.image_msg_to_rgb(msg), grey)


def test_mono8_of_a_colour_image_is_its_luma() -> None:
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    msg = ros_image.rgb_to_image_msg(red, "mono8")
    assert set(bytes(msg.data)) == {76}  # round(0.299 * 255)


@pytest.mark.parametrize("encoding,channels", [("rgb8", 3), ("bgr8", 3), ("mono8", 1),
                                               ("rgba8", 4), ("bgra8", 4)])
def test_step_padding_is_ignored(rgb: np.ndarray, encoding: str, channels: int) -> None:
    src = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1],
           "rgba8": np.dstack([rgb, np.full((5, 7), 9, np.uint8)]),
           "bgra8": np.dstack([rgb[:, :, ::-1], np.full((5, 7), 9, np.uint8)])}[encoding]
    step = 7 * channels + 5
    padded = np.full((5, step), 0xEE, np.uint8)
    padded[:, :7 * channels] = src.reshape(5, -1)
    msg = Image(height=5, width=7, encoding=encoding, step=step, data=padded.tobytes())
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(ros_image.image_msg_to_rgb(msg), expected)


@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_respects_is_bigendian(bigendian: bool) -> None:
    values = np.array([[0x1234, 0xFF00], [0x00FF, 0x8001]], np.uint16)
    data = values.astype(">u2" if bigendian else "<u2").tobytes()
    msg = Image(height=2, width=2, encoding="mono16", step=4, is_bigendian=int(bigendian),
                data=data)
    out = ros_image.image_msg_to_rgb(msg)
    np.testing.assert_array_equal(out[:, :, 0], [[0x12, 0xFF], [0x00, 0x80]])


def test_wrong_size_buffer_raises_with_expected_size(rgb: np.ndarray) -> None:
    msg = ros_image.rgb_to_image_msg(rgb)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ValueError, match=r"104 bytes, expected step\*height = 21\*5 = 105"):
        ros_image.image_msg_to_rgb(msg)


def test_step_smaller_than_a_row_raises(rgb: np.ndarray) -> None:
    msg = ros_image.rgb_to_image_msg(rgb)
    msg.step = 20
    with pytest.raises(ValueError, match="step 20 is smaller"):
        ros_image.image_msg_to_rgb(msg)


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "32FC1", ""])
def test_unsupported_encoding_is_named(rgb: np.ndarray, encoding: str) -> None:
    msg = ros_image.rgb_to_image_msg(rgb)
    msg.encoding = encoding
    with pytest.raises(ValueError, match=f"unsupported image encoding '{encoding}'"):
        ros_image.image_msg_to_rgb(msg)
    with pytest.raises(ValueError, match=f"cannot encode to '{encoding}'"):
        ros_image.rgb_to_image_msg(rgb, encoding)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_non_rgb_arrays_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected"):
        ros_image.rgb_to_image_msg(bad)


def test_png_round_trip_is_lossless(rgb: np.ndarray) -> None:
    msg = ros_image.rgb_to_compressed_msg(rgb, "png", frame_id="wrist")
    assert isinstance(msg, CompressedImage)
    assert msg.format == "rgb8; png compressed bgr8" and msg.header.frame_id == "wrist"
    np.testing.assert_array_equal(ros_image.compressed_msg_to_rgb(msg), rgb)


def test_jpeg_round_trip_is_close() -> None:
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)
    smooth[..., 2] = 200
    msg = ros_image.rgb_to_compressed_msg(smooth, "jpeg", quality=95)
    out = ros_image.compressed_msg_to_rgb(msg)
    assert out.shape == smooth.shape
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 4.0


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_pil_fallback_matches_cv2(monkeypatch: pytest.MonkeyPatch, rgb: np.ndarray,
                                  kind: str) -> None:
    data = ros_image.encode_compressed(rgb, kind, quality=100)
    with_cv2 = ros_image.decode_compressed(data, kind)
    monkeypatch.setattr(ros_image, "_import_cv2", lambda: None)
    with_pil = ros_image.decode_compressed(data, kind)
    assert np.abs(with_pil.astype(int) - with_cv2.astype(int)).max() <= 2
    if kind == "png":
        np.testing.assert_array_equal(ros_image.decode_compressed(
            ros_image.encode_compressed(rgb, "png"), "png"), rgb)


def test_corrupt_or_unknown_compressed_data_raises() -> None:
    with pytest.raises(ValueError, match="could not decode 4 bytes as jpeg"):
        ros_image.decode_compressed(b"\x00\x01\x02\x03", "jpeg")
    with pytest.raises(ValueError, match="unsupported CompressedImage format 'tiff'"):
        ros_image.compressed_msg_to_rgb(CompressedImage(format="tiff", data=b"abc"))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height and whose data is a few bytes (~70)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side, reason", [(5000, "declares 5000x5000 pixels, more than"),
                                          (40000, "declares too many pixels")])
def test_a_header_declaring_a_huge_image_is_refused_before_decoding(side, reason) -> None:
    """40000 x 40000 in a 70-byte PNG made cv2.imdecode raise cv2.error (not ValueError),
    which the node's image callback let through: the process exited."""
    msg = CompressedImage(format="png", data=_png_header(side, side))
    with pytest.raises(ValueError, match=reason):
        ros_image.compressed_msg_to_rgb(msg)


def test_an_opencv_error_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if ros_image._import_cv2() is None:
        pytest.skip("OpenCV is not installed: the PIL path is tested above")
    monkeypatch.setattr(ros_image, "_refuse_oversized", lambda data, kind: None)
    with pytest.raises(ValueError, match="could not decode"):
        ros_image.decode_compressed(_png_header(40000, 40000), "png")


class _BridgeModule(types.ModuleType):
    """A stand-in ``cv_bridge`` module whose CvBridge decodes right or wrong."""

    def __init__(self, correct: bool) -> None:
        super().__init__("cv_bridge")

        class CvBridge:
            def imgmsg_to_cv2(self, msg: Image, desired_encoding: str) -> np.ndarray:
                rgb = ros_image.decode_raw(msg.data, msg.height, msg.width, msg.encoding,
                                           msg.step)
                return rgb if correct else rgb[:, :, ::-1]  # a port that ignores encodings

        self.CvBridge = CvBridge


@pytest.mark.parametrize("correct", [True, False])
def test_cv_bridge_is_self_tested_before_use(monkeypatch: pytest.MonkeyPatch,
                                             correct: bool) -> None:
    monkeypatch.setitem(sys.modules, "cv_bridge", _BridgeModule(correct))
    assert (ros_image._load_cv_bridge() is not None) == correct


def test_cv_bridge_is_used_when_available(monkeypatch: pytest.MonkeyPatch,
                                          rgb: np.ndarray) -> None:
    calls = []

    class FakeBridge:
        def imgmsg_to_cv2(self, msg: Image, desired_encoding: str) -> np.ndarray:
            calls.append(desired_encoding)
            return rgb

    monkeypatch.setattr(ros_image, "_cv_bridge", FakeBridge)
    out = ros_image.image_msg_to_rgb(ros_image.rgb_to_image_msg(rgb, "bgr8"))
    assert calls == ["rgb8"]
    np.testing.assert_array_equal(out, rgb)
