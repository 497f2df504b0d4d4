"""Action-aware controller: a velocity profile must switch modes with hysteresis."""
import numpy as np

from specprune import EEMotion, PruneConfig
from specprune.prune.controller import ActionAwareController, lookback_steps, motion_from_action


def motion(vx=0.0, vz=0.0, wz=0.0):
    return EEMotion(linear=np.array([vx, 0.0, vz]), angular=np.array([0.0, 0.0, wz]))


def run(profile, cfg):
    ctrl = ActionAwareController()
    return [ctrl.update(m, cfg) for m in profile]


def test_fast_then_slow_descent_enters_fine_then_lift_exits():
    cfg = PruneConfig(warmup_steps=2)
    profile = ([motion(0.3)] * 4 + [motion(0.05, vz=-0.03)] * 3 + [motion(0.2)] * 2
               + [motion(0.05, vz=0.3)])
    modes = [d.mode for d in run(profile, cfg)]
    assert modes == ["coarse"] * 4 + ["fine"] * 3 + ["fine"] * 2 + ["coarse"]


def test_switch_to_fine_is_flagged_once():
    cfg = PruneConfig(warmup_steps=0)
    flags = [d.switched_to_fine for d in run([motion(0.3), motion(0.01), motion(0.01)], cfg)]
    assert flags == [False, True, False]


def test_rising_slowly_does_not_enter_fine():
    cfg = PruneConfig(warmup_steps=0)
    assert {d.mode for d in run([motion(0.01, vz=0.05)] * 3, cfg)} == {"coarse"}


def test_warmup_keeps_coarse_and_disable_pins_coarse():
    assert {d.mode for d in run([motion(0.0)] * 10, PruneConfig(warmup_steps=10))} == \
        {"coarse"}
    # the default matches the released code's 10 env ticks: the 3rd policy step may switch
    modes = [d.mode for d in run([motion(0.0)] * 4, PruneConfig())]
    assert modes == ["coarse", "coarse", "fine", "fine"]
    cfg = PruneConfig(warmup_steps=0, controller_enabled=False)
    assert {d.mode for d in run([motion(0.0)] * 3, cfg)} == {"coarse"}


def test_nan_motion_keeps_previous_mode():
    cfg = PruneConfig(warmup_steps=0)
    modes = [d.mode for d in run([motion(0.0), motion(float("nan"))], cfg)]
    assert modes == ["fine", "fine"]


def test_lookback_is_the_previous_step_by_default_and_shrinks_with_speed_when_longer():
    assert {lookback_steps(v, PruneConfig()) for v in (0.0, 0.25, 5.0)} == {1}
    cfg = PruneConfig(lookback_max_steps=6)
    assert lookback_steps(0.0, cfg) == 6
    assert lookback_steps(0.25, cfg) in (3, 4)
    assert lookback_steps(5.0, cfg) == 1


def test_motion_from_policy_action_uses_osc_scales():
    m = motion_from_action(np.array([0.1, 0, 0, 0, 0, 0.2, -1.0]), PruneConfig())
    assert np.isclose(m.trans_speed, 0.1) and np.isclose(m.rot_speed, 2.0)
