"""Time jumps for both nodes: rclpy's jump callback for a backward step of the node's clock
(a /clock reset, a restarted simulator or bag) or a change of time source, reported to the
node as a reason. A forward jump is ordinary time passing (a slow /clock, a paused sim) and
is left to each node's age limits."""
from __future__ import annotations

from typing import Any, Callable

from rclpy.clock import ClockChange, JumpHandle, JumpThreshold, TimeJump
from rclpy.duration import Duration


def jump_reason(jump: TimeJump) -> str:
    """Why ``jump`` breaks the timeline, or "" when it does not."""
    if jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
        return "the time source changed"
    if jump.delta.nanoseconds < 0:
        return f"the clock stepped back {-jump.delta.nanoseconds * 1e-9:.3f} s"
    return ""


def watch_time_jumps(node: Any, on_jump: Callable[[str], None]) -> JumpHandle:
    """Call ``on_jump(reason)`` after every backward step or time-source change of the
    node's clock; unregister the returned handle when the node stops watching."""
    def after(jump: TimeJump) -> None:
        reason = jump_reason(jump)
        if reason:
            on_jump(reason)

    return node.get_clock().create_jump_callback(
        JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1),
                      on_clock_change=True), post_callback=after)
