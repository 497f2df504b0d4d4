"""Scripted experts for LIBERO-Goal and LIBERO-10: the geometry helpers, how a BDDL goal
becomes a primitive or a sequence of them, the knob and push primitives on kinematic toys.
Real LIBERO episodes of these experts: test_libero_experts (one per primitive by default)."""
import numpy as np
import pytest

from specprune_ros.sim.libero_experts import PickPlaceExpert, expert_for
from specprune_ros.sim.libero_primitives import (RETREAT, SWEEP, DrawerConfig,
                                                 DrawerExpert, KnobConfig, PushConfig,
                                                 PushExpert, TurnOnExpert, body_of,
                                                 on_circle, quat_matrix, rotation_error,
                                                 scene_pos, unit_xy, yaw_matrix, yaw_of)
from specprune_ros.sim.libero_sequencer import SequenceExpert, ordered_goal


# ------------------------------------------------------------------------------ geometry
def test_scene_pos_prefers_objects_then_containers_then_sites_then_fixtures():
    obs = {"basket_1_pos": np.array([1.0, 0, 0]), "basket_1_contain_region_site_xpos":
           np.array([9.0, 0, 0]), "flat_stove_1_cook_region_site_xpos": np.array([2.0, 0, 0]),
           "flat_stove_1_fixture_xpos": np.array([3.0, 0, 0])}
    assert scene_pos(obs, "basket_1_contain_region")[0] == 1.0  # the container's origin
    assert scene_pos(obs, "flat_stove_1_cook_region")[0] == 2.0
    assert scene_pos(obs, "flat_stove_1")[0] == 3.0
    with pytest.raises(KeyError, match="nothing called 'rack_1'.*basket_1_pos"):
        scene_pos(obs, "rack_1")


def test_a_region_belongs_to_the_longest_body_name_it_starts_with():
    obs = {"plate_1_pos": 0, "plate_12_pos": 0, "flat_stove_1_fixture_xpos": 0,
           "plate_1_to_robot0_eef_pos": 0}
    assert body_of(obs, "flat_stove_1_cook_region") == "flat_stove_1"
    assert body_of(obs, "plate_12") == "plate_12"
    assert body_of(obs, "main_table_stove_front_region") == "main_table_stove_front_region"


def test_yaw_of_reads_rotations_about_z():
    assert yaw_of(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.0)
    assert abs(yaw_of(np.array([0.0, 0.0, 1.0, 0.0]))) == pytest.approx(np.pi)
    half = np.sin(np.pi / 4)
    assert yaw_of(np.array([0.0, 0.0, half, half])) == pytest.approx(np.pi / 2)


def test_circles_and_horizontal_directions():
    np.testing.assert_allclose(unit_xy(np.array([3.0, 4.0, 9.0])), [0.6, 0.8, 0.0])
    np.testing.assert_allclose(unit_xy(np.array([0.0, 0.0, 1.0])), np.zeros(3))
    np.testing.assert_allclose(on_circle(np.zeros(3), 2.0, np.pi / 2, 0.5), [0, 2.0, 0.5],
                               atol=1e-12)


def test_rotation_error_is_the_world_axis_angle_between_two_orientations():
    half = np.sin(np.pi / 4)
    np.testing.assert_allclose(quat_matrix(np.array([0.0, 0.0, half, half])), yaw_matrix(
        np.pi / 2), atol=1e-12)
    down = quat_matrix(np.array([1.0, 0.0, 0.0, 0.0]))  # LIBERO's hand: pointing down
    np.testing.assert_allclose(rotation_error(down, yaw_matrix(0.3) @ down), [0, 0, 0.3],
                               atol=1e-12)
    np.testing.assert_allclose(rotation_error(down, down), np.zeros(3))


@pytest.mark.parametrize("cls,bad", [(KnobConfig, {"radius": 0.0}),
                                     (PushConfig, {"tolerance": -1.0}),
                                     (DrawerConfig, {"close_ticks": 0})])
def test_primitive_configs_reject_bad_values(cls, bad):
    with pytest.raises(ValueError, match=f"{cls.__name__}.{next(iter(bad))}"):
        cls(**bad)


# ------------------------------------------------------------------------------ dispatch
def test_goals_become_primitives_in_a_workable_order():
    assert ordered_goal([["Close", "drawer"], ["In", "bowl", "drawer"]]) == [
        ["In", "bowl", "drawer"], ["Close", "drawer"]]
    assert isinstance(expert_for([["Turnon", "flat_stove_1"]]), TurnOnExpert)
    assert isinstance(expert_for([["On", "plate_1", "main_table_stove_front_region"]]),
                      PushExpert)
    assert isinstance(expert_for([["On", "akita_black_bowl_1", "plate_1"]]), PickPlaceExpert)
    pots = expert_for([["On", "moka_pot_1", "flat_stove_1_cook_region"],
                       ["On", "moka_pot_2", "flat_stove_1_cook_region"],
                       ["Turnon", "flat_stove_1"]])
    assert isinstance(pots, SequenceExpert)
    assert isinstance(pots.parts[0], TurnOnExpert)  # the knob first, then the pots apart
    assert [p.task.offset[1] for p in pots.parts[1:]] == [pytest.approx(-0.045),
                                                          pytest.approx(0.045)]
    with pytest.raises(ValueError, match="no scripted primitive"):
        expert_for([["Stack", "a", "b"]])
    # a bowl put in a drawer: the drawer is opened first, unless the goal closes it after
    put = expert_for([["In", "akita_black_bowl_1", "wooden_cabinet_1_top_region"]])
    assert isinstance(put.parts[0], DrawerExpert) and put.parts[0].opening
    stow = expert_for([["Close", "white_cabinet_1_bottom_region"],
                       ["In", "akita_black_bowl_1", "white_cabinet_1_bottom_region"]])
    assert isinstance(stow.parts[1], DrawerExpert) and not stow.parts[1].opening
    assert stow.parts[1].joint == "white_cabinet_1_bottom_level"
    # a wine rack's top region is no drawer
    assert isinstance(expert_for([["On", "wine_bottle_1", "wine_rack_1_top_region"]]),
                      PickPlaceExpert)


class Done:
    """A part that is done after ``n`` ticks."""

    focus = ("a", "b")

    def __init__(self, n):
        self.n = n

    def reset(self):
        self.ticks, self.done, self.phase, self.phase_log, self._tick = 0, False, "x", [], 0

    def valid_start(self, obs):
        return True

    def act(self, obs):
        self.ticks += 1
        self._tick += 1
        self.done = self.ticks >= self.n
        if self.done and self.phase != "end":
            self.phase = "end"
            self.phase_log.append((self._tick, "end"))
        return np.full(7, float(self.n))


def test_the_sequence_hands_over_when_a_part_is_done_and_logs_each_parts_phases():
    seq = SequenceExpert([Done(2), Done(3)])
    actions = [seq.act({})[0] for _ in range(6)]
    assert actions == [2.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert seq.done and seq.phase == "1:end"
    assert [p for _, p in seq.phase_log] == ["0:end", "1:start", "1:end"]
    seq.reset()
    assert seq.index == 0 and not seq.done


# ------------------------------------------------------------------------------ toys
def _knob_obs(eef, angle):
    return {"robot0_eef_pos": eef.copy(), "stove_fixture_xpos": np.array([0.0, 0.0, 0.9]),
            "stove_fixture_xquat": np.array([0.0, 0.0, 0.0, 1.0]),
            "stove_button_joint_qpos": np.array([angle])}


def test_the_knob_is_pushed_round_counter_clockwise_until_it_is_on():
    """Toy: the hand moves 2 cm per unit action; fingertips within 1.5 cm of the pointer's
    tip (3.5 cm out) push it round to their own angle."""
    expert, eef, angle = TurnOnExpert("stove"), np.array([0.2, -0.2, 1.1]), 0.0
    for _ in range(200):
        eef = eef + 0.02 * np.clip(expert.act(_knob_obs(eef, angle))[:3], -1, 1)
        hand = float(np.arctan2(eef[1], eef[0]))
        near = abs(float(np.hypot(eef[0], eef[1])) - 0.035) < 0.015 and eef[2] < 0.94
        if near and 0 < hand - angle < 0.5:
            angle = hand
        if expert.phase == RETREAT:
            break
    assert expert.done and angle >= expert.config.on_angle
    assert SWEEP in [p for _, p in expert.phase_log]


def test_a_knob_that_does_not_turn_is_approached_again():
    expert, eef = TurnOnExpert("stove"), np.array([0.2, -0.2, 1.1])
    for _ in range(120):  # the pointer is stuck at 0 rad
        eef = eef + 0.02 * np.clip(expert.act(_knob_obs(eef, 0.0))[:3], -1, 1)
    phases = [p for _, p in expert.phase_log]
    assert phases.count(SWEEP) >= 2 and phases[phases.index(SWEEP) + 1] == "approach"
    assert not expert.done


def test_the_push_drags_the_plate_by_its_rim_to_the_region():
    """Toy: fingers lower than the rim and farther than its inner radius (6.5 cm) from the
    plate's centre drag it along (no rotation, no friction)."""
    expert = PushExpert("plate_1", "front_region")
    eef, plate, goal = np.array([0.0, 0.0, 1.1]), np.array([0.05, -0.02, 0.9]), \
        np.array([-0.05, 0.21, 0.9])
    for _ in range(300):
        obs = {"robot0_eef_pos": eef, "plate_1_pos": plate.copy(),
               "front_region_site_xpos": goal}
        eef = eef + 0.02 * np.clip(expert.act(obs)[:3], -1, 1)
        gap = np.array([eef[0] - plate[0], eef[1] - plate[1], 0.0])
        if eef[2] < plate[2] + 0.025 and np.linalg.norm(gap) > 0.065:
            plate = plate + gap / np.linalg.norm(gap) * (np.linalg.norm(gap) - 0.065)
        if expert.phase == RETREAT:
            break
    assert expert.done and np.linalg.norm((plate - goal)[:2]) < 0.02
    assert [p for _, p in expert.phase_log] == ["descend", "push", "retreat"]
