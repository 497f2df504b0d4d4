"""openvla-oft's LIBERO episode protocol (flip, proprio, no-op ticks, step limits, gripper
conversion, query schedule) against numbers its own functions produced
(test/fixtures/libero/README.md), on a fake worker and on the real one."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from specprune_ros.sim import libero_protocol as lp
from specprune_ros.sim.libero_env import (LiberoStep, LiberoWorker, LiberoWorkerDied,
                                          libero_python)
from specprune_ros.sim.sim_arm import quat_to_axis_angle

FIXTURES = Path(__file__).parent / "fixtures" / "libero"
REF = np.load(FIXTURES / "openvla_oft_protocol.npz")


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "reference_protocol", FIXTURES / "make" / "reference_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step(obs, done=False, images=None):
    obs = dict(obs)
    for view, frame in (images or {}).items():
        obs[f"{view}_image"] = frame
    return LiberoStep(obs=obs, reward=float(done), done=done, success=done, timestep=0)


def test_constants_are_openvla_ofts():
    assert lp.SUITE_MAX_STEPS == dict(zip(REF["max_steps_suites"].tolist(),
                                          REF["max_steps"].tolist()))
    assert lp.NUM_STEPS_WAIT == int(REF["num_steps_wait"]) == 10
    assert lp.OPEN_LOOP_STEPS == int(REF["num_open_loop_steps"])
    assert lp.ENV_IMAGE_SIZE == int(REF["env_img_res"])
    assert lp.DUMMY_ACTION == tuple(REF["dummy_action"].tolist())


def test_frames_are_rotated_180_degrees_as_get_libero_image_does():
    np.testing.assert_array_equal(lp.flip_180(REF["frame"]), REF["frame_flipped"])
    np.testing.assert_array_equal(lp.flip_180(REF["frame"][:, ::-1]), REF["wrist_flipped"])
    assert lp.flip_180(REF["frame"]).flags.c_contiguous


def test_axis_angle_matches_quat2axisangle_including_the_edge_cases():
    got = np.stack([quat_to_axis_angle(q) for q in REF["quats"]])
    np.testing.assert_allclose(got, REF["axis_angle"], rtol=0, atol=1e-12)


def test_proprio_is_prepare_observations_state():
    step = _step({"robot0_eef_pos": REF["obs_eef_pos"], "robot0_eef_quat": REF["obs_eef_quat"],
                  "robot0_gripper_qpos": REF["obs_gripper_qpos"]})
    np.testing.assert_allclose(lp.proprio(step), REF["prepared_state"], rtol=0, atol=1e-12)


def test_gripper_conversion_is_process_action_for_openvla():
    np.testing.assert_array_equal(lp.gripper_to_env(REF["raw_actions"]),
                                  REF["processed_actions"])
    np.testing.assert_array_equal(lp.gripper_to_env(REF["raw_actions"][3]),
                                  REF["processed_actions"][3])


def test_config_needs_a_known_suite_or_a_step_limit():
    assert lp.ProtocolConfig("libero_10").policy_steps == 520
    assert lp.ProtocolConfig("mine", max_steps=30).policy_steps == 30
    with pytest.raises(ValueError, match="suite='mine'"):
        lp.ProtocolConfig("mine")
    with pytest.raises(ValueError, match="max_steps"):
        lp.ProtocolConfig(max_steps=0)


class FakeWorker:
    """Records what the protocol asks of a worker; ``done_at``: policy tick that succeeds."""

    def __init__(self, done_at=None):
        self.done_at, self.calls = done_at, []
        self.policy_ticks = 0

    def _obs(self):
        tick = len([c for c in self.calls if c[0] == "step"])
        return {"robot0_eef_pos": np.array([0.1 * tick, 0.0, 1.0]),
                "robot0_eef_quat": np.array([0.0, 0.0, 0.0, 1.0]),
                "robot0_gripper_qpos": np.array([0.04, -0.04])}

    def set_init_state(self, index):
        self.calls.append(("init", index))
        return _step(self._obs())

    def step(self, action, views=()):
        self.calls.append(("step", tuple(np.asarray(action, dtype=float)), tuple(views)))
        frames = {v: np.full((4, 4, 3), len(self.calls), np.uint8) for v in views}
        if tuple(action) != lp.DUMMY_ACTION:
            self.policy_ticks += 1
        return _step(self._obs(), done=self.policy_ticks == self.done_at, images=frames)

    def render(self, views):
        raise AssertionError("the protocol renders on the ticks it steps")


def _chunks(length=8):
    seen = []

    def policy(obs):
        seen.append(obs)
        return np.tile([0.1, 0, 0, 0, 0, 0, 1.0], (length, 1)) * (len(seen) + 1)
    return policy, seen


def test_ten_no_op_ticks_then_the_step_limit_with_a_query_per_chunk():
    worker, (policy, seen) = FakeWorker(), _chunks()
    config = lp.ProtocolConfig("libero_spatial", max_steps=20)
    episode = lp.run_episode(worker, policy, config, "do it", init_state=4)
    steps = [c for c in worker.calls if c[0] == "step"]
    assert worker.calls[0] == ("init", 4)
    assert [s[1] for s in steps[:10]] == [lp.DUMMY_ACTION] * 10
    assert len(steps) == 10 + 20 and episode.steps == 20 and not episode.success
    assert episode.queries == len(seen) == 3  # ticks 10, 18, 26
    rendered = [i for i, s in enumerate(steps) if s[2]]
    assert rendered == [9, 17, 25]  # only the ticks whose frames a query uses
    assert all(s[2] == lp.VIEWS for i, s in enumerate(steps) if i in rendered)
    assert seen[0].instruction == "do it" and seen[0].state.shape == (8,)
    np.testing.assert_array_equal(seen[1].full_image, np.full((4, 4, 3), 1 + 18, np.uint8))
    assert episode.error is None and len(episode.query_states) == 3


def test_success_ends_the_episode_on_that_tick():
    worker, (policy, _) = FakeWorker(done_at=5), _chunks()
    episode = lp.run_episode(worker, policy, lp.ProtocolConfig("libero_goal"), "x", 0)
    assert episode.success and episode.steps == 5 and episode.queries == 1
    assert len([c for c in worker.calls if c[0] == "step"]) == 15


def test_a_longer_chunk_keeps_its_last_eight_actions():
    def policy(obs):
        rows = np.zeros((10, 7))
        rows[:, 0] = np.arange(10) / 10
        return rows
    worker = FakeWorker()
    episode = lp.run_episode(worker, policy, lp.ProtocolConfig(max_steps=16), "x", 0)
    executed = [c[1][0] for c in worker.calls if c[0] == "step"][10:]
    assert executed == [i / 10 for i in range(2, 10)] * 2 and episode.queries == 2


def test_a_policy_error_fails_the_episode_but_a_dead_worker_stops_the_run():
    def broken(obs):
        raise ValueError("nan in the action head")
    episode = lp.run_episode(FakeWorker(), broken, lp.ProtocolConfig(max_steps=8), "x", 0)
    assert not episode.success and episode.error == "ValueError: nan in the action head"

    class Dying(FakeWorker):
        def step(self, action, views=()):
            raise LiberoWorkerDied("gone")
    with pytest.raises(LiberoWorkerDied):
        lp.run_episode(Dying(), broken, lp.ProtocolConfig(max_steps=8), "x", 0)


class _Logged:
    """A real worker whose executed actions are recorded."""

    def __init__(self, worker):
        self.worker, self.actions = worker, []

    def __getattr__(self, name):
        return getattr(self.worker, name)

    def step(self, action, views=()):
        self.actions.append(np.asarray(action, dtype=np.float64))
        return self.worker.step(action, views)


@pytest.mark.skipif(libero_python() is None, reason=".venv-libero is not installed "
                    "(scripts/setup.sh)")
def test_a_real_rollout_matches_openvla_ofts_run_episode():
    """Their run_episode and ours, same fake model (3 chunks, then it raises), on
    libero_spatial task 0, initial state 0: same states, frames and executed actions."""
    fake_chunk = _reference_module().fake_chunk

    def policy(obs):
        k = len(episode_states)
        if k == 3:
            raise RuntimeError("fake model: enough queries recorded")
        episode_states.append(obs)
        return lp.gripper_to_env(fake_chunk(k))

    episode_states = []
    with LiberoWorker() as real:
        worker = _Logged(real)
        info = worker.make("libero_spatial", 0, camera_size=lp.ENV_IMAGE_SIZE,
                           seed=lp.ENV_SEED)
        assert info["language"] == str(REF["description"])
        episode = lp.run_episode(worker, policy, lp.ProtocolConfig("libero_spatial"),
                                 info["language"], init_state=0)
    assert episode.queries == 3 and not episode.success and "enough queries" in episode.error
    np.testing.assert_array_equal(np.stack(worker.actions), REF["rollout_actions"])
    np.testing.assert_allclose(np.stack(episode.query_states[:3]), REF["rollout_states"],
                               rtol=0, atol=1e-6)
    full = np.stack([o.full_image for o in episode_states])
    wrist = np.stack([o.wrist_image for o in episode_states])
    assert full.shape == (3, 256, 256, 3)
    for ours, ref in ((full, "full"), (wrist, "wrist")):
        thumbs = ours[:, ::16, ::16].astype(int) - REF[f"rollout_{ref}_thumbs"]
        assert np.abs(thumbs).mean() < 1.0, ref  # renderer rounding across CPUs at most
        np.testing.assert_allclose(ours.reshape(3, -1).mean(1), REF[f"rollout_{ref}_mean"],
                                   atol=0.5)
