"""recording_load's accounting: lost messages are found one by one from the header stamps
in the bag, and the receive latency comes from the bag's log times."""
from __future__ import annotations

import warnings

from specprune_ros.eval.recording_load import compare, header_stamp_ns

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState


def test_header_stamp_is_read_from_the_serialized_bytes() -> None:
    js = JointState(name=["a"], position=[1.0])
    js.header.stamp = Time(sec=1_800_000_123, nanosec=456_789)
    assert header_stamp_ns(serialize_message(js)) == 1_800_000_123_000_456_789
    image = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12))
    image.header.stamp = Time(sec=7, nanosec=8)
    assert header_stamp_ns(serialize_message(image)) == 7_000_000_008


def test_each_lost_message_is_named_by_its_time_and_latency_is_log_minus_stamp() -> None:
    start = 10 * 10 ** 9
    published = {"/a": [start + k * 50_000_000 for k in range(5)], "/b": [start]}
    # /a: the third message (0.1 s after the start) never reached the bag
    recorded = {"/a": [(s, s + 2_000_000) for i, s in enumerate(published["/a"]) if i != 2]}
    out = compare(published, recorded, start)
    assert out["/a"]["dropped"] == 1 and out["/a"]["lost_at_s"] == [0.1]
    assert out["/a"]["recorded"] == 4 and out["/a"]["latency_ms"]["median"] == 2.0
    assert out["/b"] == {"published": 1, "recorded": 0, "dropped": 1, "lost_at_s": [0.0],
                         "latency_ms": {"median": 0.0, "p99": 0.0, "max": 0.0}}
