"""specprune-eval on LIBERO (issue #19): task names, the suite's step limit, development seeds
vs the claim's fixed initial states (one task or a whole suite), a released checkpoint's
gripper, the LIBERO parameter files, and a short real run of the tiny preset on
libero_object:0 in process (skipped where .venv-libero is not installed)."""
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import yaml

from specprune_ros.eval import evaluate
from specprune_ros.eval.configurations import CLAIM_SEED
from specprune_ros.eval.episode_env import LiberoArmEnv, default_horizon
from specprune_ros.sim.libero_arm import libero_task, libero_tasks
from specprune_ros.sim.libero_env import libero_python
from specprune_ros.sim.sim_arm import JOINT_NAMES, SimObservation


def test_task_names_select_a_libero_suite_and_its_step_limit() -> None:
    assert libero_task("pick_color") is None and libero_task("libero_10:7") == ("libero_10", 7)
    for bad in ("libero_spatial:x", "robocasa:1", "libero_goal:", "libero_goal:all"):
        with pytest.raises(ValueError, match="<suite>:<index>"):
            libero_task(bad)
    assert libero_tasks("libero_goal:all") == ("libero_goal", tuple(range(10)))
    assert libero_tasks("libero_goal:4") == ("libero_goal", (4,))
    assert libero_tasks("lift") is None
    with pytest.raises(ValueError, match="<suite>:all"):
        libero_tasks("libero_100:all")
    suites = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
    assert [default_horizon(f"{s}:0") for s in suites] == [220, 280, 300, 520]
    assert default_horizon("pick_color") == 150 and default_horizon("libero_10:all") == 520
    with pytest.raises(ValueError, match="step limit"):
        default_horizon("libero_100:0")


def test_the_cli_takes_the_suite_limit_unless_a_horizon_is_given(
        capsys: pytest.CaptureFixture) -> None:
    args = evaluate.parse_args(["--policy", "tiny", "--task", "libero_goal:3"])
    assert args.horizon == 300 and evaluate.episode_spec(args).task == "libero_goal:3"
    assert evaluate.parse_args(["--policy", "tiny", "--task", "libero_goal:3",
                                "--horizon", "9"]).horizon == 9
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--policy", "tiny", "--task", "libero_goal:x"])
    with pytest.raises(SystemExit):  # the claim set holds 50 initial states per task
        evaluate.parse_args(["--policy", "tiny", "--task", "libero_goal:3", "--claim",
                             "--episodes", "51", "--json", "/nonexistent/claim.json"])
    assert "50 fixed initial states" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the bridge builds one task
        evaluate.parse_args(["--policy", "tiny", "--task", "libero_goal:all", "--via", "ros"])
    assert "one LIBERO task per run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--policy", "tiny", "--gripper-convention", "openvla_oft"])
    assert "for LIBERO tasks" in capsys.readouterr().err


class _Arm:
    """Records how the env resets a LIBERO arm."""

    instruction = "put the bowl on the plate"

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any]] = []

    def _obs(self) -> SimObservation:
        return SimObservation(
            images={"agentview": np.zeros((8, 8, 3), np.uint8),
                    "robot0_eye_in_hand": np.zeros((8, 8, 3), np.uint8)},
            joint_names=JOINT_NAMES, joint_positions=np.zeros(9), joint_velocities=np.zeros(9),
            eef_pos=np.array([0.1, 0.0, 1.0]), eef_quat=np.array([1.0, 0.0, 0.0, 0.0]),
            gripper_qpos=np.array([0.04, -0.04]), base_pos=np.zeros(3),
            base_quat=np.array([0.0, 0.0, 0.0, 1.0]), sim_time=0.5, success=False, step=0,
            extras={})

    def reset(self, seed: Any = None) -> SimObservation:
        self.calls.append(("seed", seed))
        return self._obs()

    def reset_to_init_state(self, index: int) -> SimObservation:
        self.calls.append(("init_state", index))
        return self._obs()

    def step(self, action: np.ndarray, render: bool = True) -> SimObservation:
        self.calls.append(("step", float(action[-1])))
        return self._obs()

    def close(self) -> None:
        self.calls.append(("close", None))


def _env(tasks: Any, claim: bool = False, first: int = 100_000, openvla_oft: bool = False
         ) -> Tuple[LiberoArmEnv, Dict[int, _Arm]]:
    """A LiberoArmEnv over recording arms, and the arms it built by task."""
    arms: Dict[int, _Arm] = {}
    env = LiberoArmEnv(lambda task: arms.setdefault(task, _Arm()), tasks, first, claim,
                       openvla_oft)
    return env, arms


def test_development_episodes_are_seeds_and_claim_episodes_the_fixed_initial_states() -> None:
    dev, dev_arms = _env((3,))
    dev.reset(100_003)
    assert dev_arms[3].calls == [("seed", 100_003)]
    claim, arms = _env((3,), claim=True, first=CLAIM_SEED)
    frame = claim.reset(CLAIM_SEED)
    claim.reset(CLAIM_SEED + 49)
    assert arms[3].calls == [("init_state", 0), ("init_state", 49)]
    np.testing.assert_allclose(frame.proprio[:3], [0.1, 0.0, 1.0])  # world frame, as LIBERO's
    with pytest.raises(ValueError, match="50 initial states per task"):
        claim.reset(CLAIM_SEED + 50)


def test_a_suite_runs_its_tasks_in_the_benchmarks_order_one_open_at_a_time() -> None:
    claim, arms = _env(range(10), claim=True, first=CLAIM_SEED)
    for i in (0, 49, 50, 499):
        claim.reset(CLAIM_SEED + i)
    assert arms[0].calls == [("init_state", 0), ("init_state", 49), ("close", None)]
    assert arms[1].calls == [("init_state", 0), ("close", None)]
    assert arms[9].calls == [("init_state", 49)] and sorted(arms) == [0, 1, 9]
    with pytest.raises(ValueError, match=f"{CLAIM_SEED}..{CLAIM_SEED + 499}"):
        claim.reset(CLAIM_SEED + 500)
    dev, dev_arms = _env(range(10))
    dev.reset(100_012)  # development episode i runs task i % 10
    assert dev_arms[2].calls == [("seed", 100_012)]
    dev.close()
    assert dev_arms[2].calls[-1] == ("close", None)


def test_a_released_checkpoints_gripper_is_converted_as_openvla_oft_does() -> None:
    (ours, ours_arms), (released, released_arms) = _env((0,)), _env((0,), openvla_oft=True)
    ours.reset(100_000)
    released.reset(100_000)
    for gripper in (1.0, 0.9, 0.1):  # OpenVLA-OFT: 1 open, 0 close
        ours.step(np.array([0.0] * 6 + [gripper]))
        released.step(np.array([0.0] * 6 + [gripper]))
    assert ours_arms[0].calls[1:] == [("step", 1.0), ("step", 0.9), ("step", 0.1)]
    assert released_arms[0].calls[1:] == [("step", -1.0), ("step", -1.0), ("step", 1.0)]


@pytest.mark.slow
@pytest.mark.skipif(libero_python() is None, reason=".venv-libero is not installed "
                    "(scripts/setup.sh installs it; SPECPRUNE_SKIP_LIBERO=1 skipped it)")
def test_tiny_policy_runs_a_libero_episode_in_process(tmp_path: Path) -> None:
    out = tmp_path / "libero_eval.json"
    code = evaluate.main(["--policy", "tiny", "--task", "libero_object:0", "--episodes", "1",
                          "--horizon", "12", "--configs", "specprune", "--l1-every", "0",
                          "--hit-every", "0", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    episode = result["configs"]["specprune"]["per_episode"][0]
    assert episode["error"] is None, episode["error"]
    assert episode["instruction"] == "pick up the alphabet soup and place it in the basket"
    assert episode["steps"] == 12 and not episode["success"]
    assert episode["policy_steps"] >= 2  # a chunk of at most 8 actions per policy step
    assert result["configs"]["specprune"]["policy_steps"] == episode["policy_steps"]
    assert result["task"] == "libero_object:0" and result["horizon"] == 12


def test_libero_parameter_files_set_declared_parameters_to_allowed_values() -> None:
    from specprune_ros.node import executor_parameters as xp
    from specprune_ros.sim import sim_bridge_node as bridge

    config = Path(__file__).resolve().parents[1] / "config"
    files = {"libero_arm.yaml": ({s.name: s for s in bridge.PARAMS}, "specprune_sim_arm"),
             "executor_libero.yaml": (xp.BY_NAME, xp.NODE_NAME)}
    for name, (specs, node) in files.items():
        values = yaml.safe_load((config / name).read_text())[node]["ros__parameters"]
        for key, value in values.items():
            spec = specs[key]
            assert type(value) is type(spec.default), (name, key)
            assert spec.lo is None or spec.lo <= value <= spec.hi, (name, key)
            assert not spec.choices or value in spec.choices, (name, key)
    executor = yaml.safe_load((config / "executor_libero.yaml").read_text())
    values = executor[xp.NODE_NAME]["ros__parameters"]
    assert xp.check_values(values, {s.name: s.default for s in xp.PARAMS}) is None
    assert values["base_frame"] == "world"
    assert bridge.libero_config({"task": "libero_10:9", "control_rate_hz": 20.0,
                                 "camera_size": 256, "horizon": 520,
                                 "reset_init_state": -1}).suite == "libero_10"
    with pytest.raises(ValueError, match="20 Hz"):
        bridge.libero_config({"task": "libero_10:9", "control_rate_hz": 50.0,
                              "camera_size": 256, "horizon": 520, "reset_init_state": -1})
    with pytest.raises(ValueError, match="no fixed initial states"):
        bridge.libero_config({"task": "pick_color", "reset_init_state": 2})
    assert bridge.camera_every(20.0, 5.0) == 4 and bridge.camera_every(20.0, 0.0) == 1


def test_via_ros_wires_the_libero_bridge_node_and_executor_in_the_world_frame() -> None:
    from specprune_ros.eval import eval_ros

    args = evaluate.parse_args(["--policy", "tiny", "--via", "ros", "--task", "libero_goal:2",
                                "--gripper-convention", "openvla_oft"])
    bridge, policy, executor = (" ".join(c) for c in eval_ros._node_commands(args))
    assert "config/libero_arm.yaml -p task:=libero_goal:2" in bridge
    assert "gripper_convention:=openvla_oft" in bridge
    # base_frame world and 256 x 256 frames (test_task_wiring checks the file's values)
    assert "config/policy.yaml --params-file " in policy
    assert "config/policy_libero.yaml -p autostart:=true" in policy
    assert "config/executor_libero.yaml -p autostart:=true" in executor
    plain = evaluate.parse_args(["--policy", "tiny", "--via", "ros"])
    assert not any("libero" in " ".join(c) for c in eval_ros._node_commands(plain))
    assert eval_ros.bridge_start(args, 100_007) == {"reset_seed": 100_007}
    claim = evaluate.parse_args(["--policy", "tiny", "--via", "ros", "--task", "libero_goal:2",
                                 "--claim", "--episodes", "50", "--json", "/nonexistent.json"])
    start = eval_ros.bridge_start(claim, CLAIM_SEED + 49)
    assert start == {"reset_seed": -1, "reset_init_state": 49}
