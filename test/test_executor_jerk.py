"""specprune_ros.eval.executor_jerk: its JSON says which model ran where (issue #17)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from specprune.bench import machine
from specprune.model.checkpoint import checkpoint_hash
from specprune_ros.eval import executor_jerk
from specprune_ros.node import executor_parameters as xp
from specprune_ros.node.package_data import shipped_checkpoint


def test_json_records_the_checkpoint_hash_and_the_machine(tmp_path) -> None:
    out = tmp_path / "jerk.json"
    assert executor_jerk.main(["--episodes", "1", "--horizon", "8", "--rules", "latest",
                               "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["policy"] == shipped_checkpoint()
    assert result["checkpoint_hash"] == checkpoint_hash(shipped_checkpoint())
    assert result["machine"] == machine(1, "cpu", "float32")
    assert set(result["rules"]) == {"latest"} and result["episodes"] == 1


class _Samples:
    """A ChunkCombiner stand-in: one full-speed point, then nothing (a hold)."""

    def __init__(self, actions):
        self.actions = list(actions)

    def sample(self, now):
        return SimpleNamespace(action=self.actions.pop(0), skipped=0)


class _Pose:
    def eef_pose_in_base(self):
        return np.array([0.5, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0])


def test_a_hold_decelerates_at_the_stop_limit_as_the_executors_holds_do() -> None:
    # executor_sim.yaml's limits (accel 1000 m/s^2) and the robot's (0.25 m/s, stop decel
    # 5 m/s^2) both stop within one 50 ms tick: a 2 m/s^2 stop deceleration shows the ramp
    values = {s.name: s.default for s in xp.PARAMS}
    limits = xp.limits_from(dict(values, max_linear_stop_decel=2.0))
    moving = np.array([1.0, 0, 0, 0, 0, 0, 1.0])
    episode = executor_jerk.Episode(None, None, _Samples([moving] * 40 + [None] * 3), limits,
                                    4, 2)
    dt = 0.05
    for tick in range(43):
        episode._command(1.0 + tick * dt, _Pose(), -1.0, dt)
    speeds = [float(np.linalg.norm(v[:3])) for v in episode.velocities]
    cruise = speeds[39]
    assert cruise > 0.1
    # the old runner sent zero at once; the executor comes down at max_linear_stop_decel
    assert speeds[40] == pytest.approx(max(cruise - limits.linear_stop * dt, 0.0), abs=1e-9)
    assert speeds[40] > 0.0 and episode.holds == 3
