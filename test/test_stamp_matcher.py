"""Pairing by header stamp without ROS: StampMatcher, SampleHistory, and the builder on the
arrival orders that broke pairing by arrival (issue #13: the next tick's agentview frame
before this tick's wrist frame)."""
import itertools
import math
from typing import List, Optional, Sequence

import numpy as np
import pytest

from specprune_ros.node.input_faults import Limits
from specprune_ros.node.observation_builder import ObservationBuilder
from specprune_ros.node.stamp_matcher import (ADDED, DUPLICATE, LATE, RESET, SampleHistory,
                                              StampMatcher)

T0 = 1000.0
DT = 0.05  # 20 Hz ticks
VIEWS = ("/camera/agentview/image_raw", "/camera/wrist/image_raw")
JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8)) + ("panda_finger_joint1",
                                                          "panda_finger_joint2")
IDENTITY = (0.0, 0.0, 0.0, 1.0)


def stamps(match: Optional[Sequence]) -> Optional[List[float]]:
    return None if match is None else [f.stamp for f in match]


def tick(i: int) -> float:
    return T0 + i * DT


# ------------------------------------------------------------------ StampMatcher
def test_exact_pair_is_found_although_the_next_tick_of_one_view_came_first() -> None:
    m = StampMatcher(2, max_skew_s=0.0)
    m.add(0, tick(0), "a0")
    m.add(0, tick(1), "a1")  # agentview of tick 1 before wrist of tick 0
    m.add(1, tick(0), "w0")
    assert [f.item for f in m.match()] == ["a0", "w0"]


def test_every_interleaving_of_two_ticks_yields_matched_pairs_only() -> None:
    events = [(0, 0), (1, 0), (0, 1), (1, 1)]
    for order in itertools.permutations(events):
        if order.index((0, 0)) > order.index((0, 1)) or \
                order.index((1, 0)) > order.index((1, 1)):
            continue  # each view's own frames come in order
        m = StampMatcher(2, max_skew_s=0.0)
        served = []
        for view, i in order:
            m.add(view, tick(i), (view, i))
            match = m.match()
            if match is not None:
                assert match[0].stamp == match[1].stamp, order
                served.append(match[0].stamp)
                m.mark_used(match)
        assert served[-1] == tick(1), order  # the newest pair is always served in the end
        assert served == sorted(set(served)), order  # never an older or repeated pair


def test_newest_matched_set_wins_over_older_ones() -> None:
    m = StampMatcher(2, max_skew_s=0.0)
    for i in range(3):
        m.add(0, tick(i), i)
        m.add(1, tick(i), i)
    assert stamps(m.match()) == [tick(2)] * 2


def test_approximate_match_within_skew_prefers_the_newest_then_the_tightest() -> None:
    m = StampMatcher(2, max_skew_s=0.02)
    m.add(0, T0, "a")
    m.add(0, T0 + 0.04, "b")
    m.add(1, T0 + 0.025, "w")  # 0.025 from a (too far), 0.015 from b
    assert [f.item for f in m.match()] == ["b", "w"]
    m2 = StampMatcher(2, max_skew_s=0.02)
    m2.add(0, T0, "a")
    m2.add(1, T0 + 0.03, "w")
    assert m2.match() is None and m2.pending()  # both new, out of sync
    assert m2.newest_spread() == (0, 1, pytest.approx(0.03))


def test_a_dropped_frame_skips_its_tick_and_the_next_pair_matches() -> None:
    m = StampMatcher(2, max_skew_s=0.0)
    m.add(0, tick(0), 0)
    m.add(1, tick(0), 0)
    m.mark_used(m.match())
    m.add(0, tick(1), 1)  # wrist frame of tick 1 lost
    m.add(0, tick(2), 2)
    assert m.match() is None and not m.pending()  # wrist has nothing new: wait
    m.add(1, tick(2), 2)
    assert stamps(m.match()) == [tick(2)] * 2


def test_used_frames_and_older_ones_are_never_served_again() -> None:
    m = StampMatcher(2, max_skew_s=0.0)
    m.add(0, tick(1), 1)
    m.add(1, tick(1), 1)
    m.mark_used(m.match())
    assert m.match() is None
    assert m.add(1, tick(0), "late") == LATE  # delivered after a newer pair was used
    assert m.add(0, tick(1), "again") == LATE
    assert m.match() is None and m.counters.late == 2


def test_duplicate_stamps_are_dropped_and_counted() -> None:
    m = StampMatcher(2, max_skew_s=0.0)
    assert m.add(0, tick(0), "first") == ADDED
    assert m.add(0, tick(0), "second") == DUPLICATE
    m.add(1, tick(0), "w")
    assert m.match()[0].item == "first" and m.counters.duplicate == 1


def test_out_of_order_frames_are_inserted_in_stamp_order() -> None:
    m = StampMatcher(2, max_skew_s=0.0)
    m.add(0, tick(2), 2)
    m.add(0, tick(1), 1)  # slightly late, still newer than anything used
    m.add(1, tick(1), 1)
    assert stamps(m.match()) == [tick(1)] * 2


def test_stamps_going_back_past_the_reset_limit_restart_matching() -> None:
    m = StampMatcher(2, max_skew_s=0.0, reset_after_s=1.0)
    m.add(0, tick(100), "old")
    m.add(1, tick(100), "old")
    m.mark_used(m.match())
    assert m.add(0, 5.0, "new") == RESET  # the simulator restarted its clock
    assert m.newest(1) is None and m.counters.reset == 1
    m.add(1, 5.0, "new")
    assert [f.item for f in m.match()] == ["new", "new"]


def test_buffer_depth_bounds_memory() -> None:
    m = StampMatcher(2, max_skew_s=0.0, depth=3)
    for i in range(10):
        m.add(0, tick(i), i)
    m.add(1, tick(2), 2)  # its partner fell out of the buffer
    assert m.match() is None
    m.add(1, tick(8), 8)
    assert stamps(m.match()) == [tick(8)] * 2


# ------------------------------------------------------------------ SampleHistory
def blend(a: float, b: float, fraction: float) -> float:
    return a + fraction * (b - a)


def test_sample_history_reads_exact_interpolated_or_nothing() -> None:
    h: SampleHistory[float] = SampleHistory()
    h.add(1.0, 10.0)
    h.add(2.0, 20.0)
    assert h.at(1.0, blend) == 10.0
    assert h.at(1.25, blend) == pytest.approx(12.5)
    assert h.at(0.5, blend) is None and h.at(2.5, blend) is None  # before / not yet
    h.add(2.0, 21.0)  # a repeated stamp replaces
    assert h.at(2.0, blend) == 21.0 and len(h.samples) == 2
    h.add(1.5, 0.0)  # out of order: in place
    assert [s.stamp for s in h.samples] == [1.0, 1.5, 2.0]
    h.add(0.1, 5.0)  # back by more than reset_after_s: restart
    assert [s.stamp for s in h.samples] == [0.1]


# ------------------------------------------------------------------ the builder
def frame(value: int) -> np.ndarray:
    return np.full((224, 224, 3), value, dtype=np.uint8)


def add_state(builder: ObservationBuilder, t: float, x: float, finger: float = 0.04) -> None:
    builder.set_joint_state(JOINTS, [0.0] * 7 + [finger, -finger], t)
    builder.add_pose((x, 0.0, 0.3), IDENTITY, t)


def test_simulator_tick_order_under_load_pairs_by_stamp_not_by_arrival() -> None:
    """The defect: agentview(t+1) arrives before wrist(t); the newest-per-view pair would
    be one tick apart. Each observation's views and proprio belong to one instant."""
    builder = ObservationBuilder(VIEWS, limits=Limits(max_view_skew_s=0.0))
    add_state(builder, tick(-1), 0.4 - DT * 0.1)
    served = []
    for i in range(6):
        builder.add_frame(0, frame(i), tick(i))
        if i:
            builder.add_frame(1, frame(i - 1), tick(i - 1))  # wrist one tick late
            add_state(builder, tick(i - 1), 0.4 + (i - 1) * DT * 0.1)
        obs = builder.build(tick(i) + 0.01, "go").observation
        if obs is not None:
            assert obs.images[0][0, 0, 0] == obs.images[1][0, 0, 0]  # same instant
            k = int(obs.images[0][0, 0, 0])
            assert obs.stamp == tick(k)
            assert obs.proprio[0] == pytest.approx(0.4 + k * DT * 0.1)
            served.append(k)
    assert served == [0, 1, 2, 3, 4]


def test_a_new_episode_spends_every_frame_taken_before_it() -> None:
    """~/reset at a stamp: frames buffered from before it, or arriving later but stamped
    before it, never pair; the first set is of frames stamped after it. A clock reset
    after it still restarts matching."""
    m = StampMatcher(2, max_skew_s=0.0, reset_after_s=1.0)
    m.add(0, tick(1), "before")
    m.add(1, tick(1), "before")
    m.spend_until(tick(1) + 0.01)
    assert m.match() is None
    assert m.add(0, tick(1) - 0.01, "in transit") == LATE and m.counters.late == 1
    m.add(0, tick(2), "after")
    m.add(1, tick(2), "after")
    assert [f.item for f in m.match()] == ["after", "after"]
    m.mark_used(m.match())
    m.spend_until(tick(3))
    assert m.newest(0).item == "after" and m.match() is None
    assert m.add(0, 5.0, "restarted") == RESET
    assert m.newest(1) is None
    m.add(1, 5.0, "restarted")
    assert [f.item for f in m.match()] == ["restarted"] * 2


def test_builder_steps_only_on_frames_stamped_after_a_new_episode() -> None:
    builder = ObservationBuilder(VIEWS)
    for i in range(3):
        add_state(builder, tick(i), 0.40 + 0.01 * i)
    for view in range(2):
        builder.add_frame(view, frame(1), tick(1))
    builder.new_episode(tick(1) + 0.01)
    result = builder.build(tick(1) + 0.02, "go")
    assert result.observation is None and result.waiting == "no new frame of every view"
    for view in range(2):
        builder.add_frame(view, frame(2), tick(2))
    obs = builder.build(tick(2) + 0.01, "go").observation
    assert obs is not None and obs.proprio[0] == pytest.approx(0.42)


def test_state_is_interpolated_to_the_image_stamp() -> None:
    builder = ObservationBuilder(VIEWS)
    add_state(builder, T0 - 0.1, 0.40, finger=0.02)
    add_state(builder, T0, 0.41, finger=0.04)
    add_state(builder, T0 + 0.1, 0.43, finger=0.04)
    for view in range(2):
        builder.add_frame(view, frame(1), T0 + 0.025)
    obs = builder.build(T0 + 0.1, "go").observation
    np.testing.assert_allclose(obs.proprio[[0, 6, 7]], [0.415, 0.04, -0.04], atol=1e-12)
    np.testing.assert_allclose(obs.ee_motion.linear, [0.2, 0.0, 0.0], atol=1e-9)  # [T0, +0.1]


def test_build_waits_for_the_state_of_the_image_instant_then_uses_it() -> None:
    builder = ObservationBuilder(VIEWS)
    add_state(builder, T0 - 0.05, 0.40)
    add_state(builder, T0, 0.41)
    for view in range(2):
        builder.add_frame(view, frame(1), T0 + 0.05)  # images of the next tick first
    result = builder.build(T0 + 0.06, "go")
    assert result.observation is None and result.faults == []
    assert result.waiting == "joint state at the image stamp"
    add_state(builder, T0 + 0.05, 0.42)
    obs = builder.build(T0 + 0.06, "go").observation
    assert obs.proprio[0] == pytest.approx(0.42)


def test_state_far_behind_the_images_is_a_fault_not_an_endless_wait() -> None:
    builder = ObservationBuilder(VIEWS, limits=Limits(max_joint_state_age_s=0.2,
                                                      max_pose_age_s=5.0))
    add_state(builder, T0 - 0.05, 0.40)
    add_state(builder, T0, 0.41)
    for view in range(2):  # a camera clock 0.3 s ahead of the joint states'
        builder.add_frame(view, frame(1), T0 + 0.3)
    faults = builder.build(T0 + 0.1, "go").faults
    assert [f.key for f in faults] == ["joint_state_behind"]
    assert "0.30 s older than the image stamp > 0.2 s" in faults[0].message


@pytest.mark.parametrize("case", ["camera latency above the age limit", "state clock ahead"])
def test_state_history_that_can_never_reach_the_image_stamp_is_a_fault(case) -> None:
    """The state history keeps its age limit: frames arriving later than that after their
    stamp (or state stamped ahead of the cameras) always found it starting after the
    image stamp, and the node waited for ever with /diagnostics OK."""
    if case == "camera latency above the age limit":  # 1 kHz state, frames 60 ms late
        builder = ObservationBuilder(VIEWS, limits=Limits(max_joint_state_age_s=0.05))
        for i in range(200):
            add_state(builder, T0 + i * 1e-3, 0.4)
        image_stamp, now = T0 + 0.199 - 0.06, T0 + 0.2
    else:  # joint states stamped 0.6 s ahead of the camera clock
        builder = ObservationBuilder(VIEWS)
        add_state(builder, T0 + 0.6 - 0.05, 0.40)
        add_state(builder, T0 + 0.6, 0.41)
        image_stamp, now = T0, T0 + 0.01
    for view in range(2):
        builder.add_frame(view, frame(1), image_stamp)
    result = builder.build(now, "go")
    assert result.observation is None and [f.key for f in result.faults] == \
        ["joint_state_ahead"], (result.waiting, result.faults)
    assert "raise the age limit above the camera latency" in result.faults[0].message


def test_first_state_after_the_first_frames_is_still_a_wait() -> None:
    builder = ObservationBuilder(VIEWS)
    for view in range(2):
        builder.add_frame(view, frame(1), T0)
    add_state(builder, T0 + 0.02, 0.40)  # the state starts just after: start-up, no fault
    add_state(builder, T0 + 0.04, 0.40)
    result = builder.build(T0 + 0.03, "go")
    assert result.faults == [] and result.waiting == "joint state history starts after " \
        "the image stamp"


def test_a_jumping_pose_is_no_proprio_with_the_policy_motion_source() -> None:
    """ee_motion_source 'policy': the pose is only proprio, and the jump check ran only for
    a measured motion: x = 1.4 between 0.4 and 0.405 went into the observation."""
    builder = ObservationBuilder(VIEWS, measure_motion=False)
    for t, x in ((T0 - 0.1, 0.4), (T0 - 0.05, 1.4), (T0, 0.405)):
        add_state(builder, t, x)
    for view in range(2):
        builder.add_frame(view, frame(1), T0 - 0.05)
    result = builder.build(T0 + 0.01, "go")
    assert result.observation is None
    assert "ee_jump" in [f.key for f in result.faults], result.faults
    add_state(builder, T0 + 0.05, 0.41)  # consistent again: steps resume
    for view in range(2):
        builder.add_frame(view, frame(2), T0 + 0.05)
    obs = builder.build(T0 + 0.06, "go").observation
    assert obs is not None and obs.proprio[0] == pytest.approx(0.41)


def test_nan_in_a_sample_around_the_stamp_gives_no_observation() -> None:
    builder = ObservationBuilder(VIEWS)
    add_state(builder, T0 - 0.05, 0.40)
    add_state(builder, T0, 0.41, finger=math.nan)
    add_state(builder, T0 + 0.05, 0.42)  # newest is fine
    for view in range(2):
        builder.add_frame(view, frame(1), T0 + 0.02)
    faults = builder.build(T0 + 0.06, "go").faults
    assert [f.key for f in faults] == ["joint_state_nonfinite"]


def test_match_counters_report_dropped_frames() -> None:
    builder = ObservationBuilder(VIEWS)
    builder.add_frame(0, frame(1), T0)
    builder.add_frame(0, frame(1), T0)
    assert builder.match_counters() == {"frames_duplicate": 1, "frames_late": 0,
                                        "clock_resets": 0}


def test_sample_history_keeps_its_age_limit_of_a_fast_signal() -> None:
    h: SampleHistory[float] = SampleHistory(reset_after_s=0.5)
    for i in range(3000):  # 3 s of a 1 kHz joint state
        h.add(T0 + i * 1e-3, float(i))
    assert len(h.samples) == 501 and h.samples[0].stamp == pytest.approx(T0 + 2.499)
    assert h.at(T0 + 2.7005, blend) == pytest.approx(2700.5)  # 0.3 s back: still there
