"""LiberoArm: a LIBERO task behind SimArm's interface (protocol frames, world-frame proprio,
privileged object poses, rendering only when asked)."""
import numpy as np
import pytest

from specprune_ros.sim.libero_arm import LiberoArm, LiberoArmConfig
from specprune_ros.sim.libero_env import libero_python
from specprune_ros.sim.libero_protocol import flip_180


def test_config_rejects_unknown_cameras_and_a_zero_horizon():
    with pytest.raises(ValueError, match="cameras"):
        LiberoArmConfig(cameras=("frontview",))
    with pytest.raises(ValueError, match="horizon"):
        LiberoArmConfig(horizon=0)


@pytest.mark.skipif(libero_python() is None, reason=".venv-libero is not installed "
                    "(scripts/setup.sh)")
def test_the_arm_shows_protocol_frames_and_world_frame_proprio():
    config = LiberoArmConfig(suite="libero_object", task=0, camera_size=64, horizon=3)
    with LiberoArm(config) as arm:
        obs = arm.reset(seed=1000)
        assert arm.instruction.startswith("pick up the alphabet soup")
        raw = arm.worker.render(("agentview",))["agentview"]
        np.testing.assert_array_equal(obs.images["agentview"], flip_180(raw))
        assert obs.images["robot0_eye_in_hand"].shape == (64, 64, 3)
        state = np.concatenate([obs.eef_pos, obs.proprio_libero()[3:6], obs.gripper_qpos])
        np.testing.assert_allclose(obs.proprio_in_base(), state, atol=1e-12)
        assert obs.joint_positions.shape == (9,) and "alphabet_soup_1_pos" in obs.extras
        assert np.linalg.norm(obs.extras["robot_base_pos"]) > 0.1  # LIBERO's base is offset
        moved = arm.step(np.array([0, 0, 0.5, 0, 0, 0, -1.0]), render=False)
        assert moved.images == {} and moved.step == 1 and moved.eef_pos[2] > obs.eef_pos[2]
        arm.step(np.zeros(7))
        arm.step(np.zeros(7))
        with pytest.raises(RuntimeError, match="horizon"):
            arm.step(np.zeros(7))
