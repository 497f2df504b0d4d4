"""specprune-replay and specprune-bag2demos on a bag written with rosbags directly: the
observations the node stepped on are found again (the node's chunk stamped S while later
frames had already arrived), the chunks reproduced, and a missing topic, a wrong type or a
truncated file named."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest

from specprune import PruneConfig, load_policy
from specprune.train.demo_dataset import read_demos
from specprune_ros.eval import bag2demos, replay
from specprune_ros.node.bag_reader import BagError
from bag_helpers import BASE, T, string, synthetic_run

TICKS, EVERY = 24, 2


def bool_parameter_event(name: str, value: bool) -> Any:
    """What `ros2 param set /specprune_policy <name> <value>` puts on /parameter_events."""
    parameter_value = T["rcl_interfaces/msg/ParameterValue"](
        type=1, bool_value=value, integer_value=0, double_value=0.0, string_value="",
        byte_array_value=np.zeros(0, np.uint8), bool_array_value=np.zeros(0, bool),
        integer_array_value=np.zeros(0, np.int64), double_array_value=np.zeros(0),
        string_array_value=[])
    return T["rcl_interfaces/msg/ParameterEvent"](
        stamp=T["builtin_interfaces/msg/Time"](sec=BASE - 1, nanosec=0),
        node="/specprune_policy", new_parameters=[],
        changed_parameters=[T["rcl_interfaces/msg/Parameter"](
            name=name, value=parameter_value)],
        deleted_parameters=[])


def disable_pruning_event() -> Any:
    return bool_parameter_event("prune.enabled", False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Any, Dict[float, np.ndarray]]:
    policy = load_policy("tiny", device="cpu", dtype="float32",
                         prune_config=PruneConfig(enabled=False))
    published: Dict[float, np.ndarray] = {}

    def step(result: Any) -> Tuple[np.ndarray, Any]:
        chunk, _ = policy.step(result.observation)
        published[result.observation.stamp] = chunk.actions
        return chunk.actions, policy.layout.action_names

    bag = synthetic_run(TICKS, EVERY, step, episodes=2)
    bag.add("/parameter_events", "rcl_interfaces/msg/ParameterEvent", BASE - 0.5,
            disable_pruning_event())
    return bag, published


def test_replay_reproduces_the_chunks_of_a_bag_written_by_rosbags(synthetic, tmp_path) -> None:
    bag, published = synthetic
    path = bag.write(tmp_path / "bag")
    out = tmp_path / "replay.json"
    code = replay.main([str(path), "--model", "tiny", "--configs",
                        "unpruned,specprune,recorded,random",
                        "--set", "prune.keep_scale=0.5,2", "--json", str(out),
                        "--plot", str(tmp_path / "replay.png"),
                        "--overlays", str(tmp_path / "overlays")])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["steps"] == len(published) > 5 and not result["chunks_not_rebuilt"]
    assert result["episodes"] == 2 and result["parameters_from"] == "defaults"
    assert "open loop" in result["note"]
    for name in ("unpruned", "recorded"):  # the node ran unpruned (prune.enabled false)
        rep = result["reproduces_node"][name]
        assert rep["steps_compared"] == len(published) and rep["max_abs_diff"] < 1e-5, rep
    configs = result["configs"]
    assert set(configs) == {"unpruned", "specprune", "recorded", "specprune[keep_scale=0.5]",
                            "specprune[keep_scale=2]", "random"}
    assert configs["specprune[keep_scale=0.5]"]["kept_visual_tokens_mean"] < \
        configs["specprune[keep_scale=2]"]["kept_visual_tokens_mean"] < \
        configs["unpruned"]["kept_visual_tokens_mean"]
    assert configs["specprune"]["action_l1_vs_unpruned"] > 0
    # random dropping keeps SpecPrune's mean budget (it once ran unpruned here)
    assert configs["random"]["kept_visual_tokens_mean"] == round(
        configs["specprune"]["kept_visual_tokens_mean"])
    assert configs["random"]["action_l1_vs_unpruned"] > 0
    assert Path(configs["specprune"]["worst_overlay"]).is_file()
    assert (tmp_path / "replay.png").stat().st_size > 10_000


def test_missing_topic_is_named(synthetic, tmp_path) -> None:
    path = synthetic[0].write(tmp_path / "bag", omit=("/joint_states",))
    with pytest.raises(BagError, match=r"topic /joint_states \(joint_states, "
                                       r"sensor_msgs/msg/JointState\) has no messages"):
        replay.replay(replay.parse_args([str(path), "--model", "tiny"]))


def test_wrong_message_type_is_named(synthetic, tmp_path) -> None:
    path = synthetic[0].write(tmp_path / "bag", retype={"/ee_pose": "std_msgs/msg/String"})
    with pytest.raises(BagError, match=r"topic /ee_pose \(ee_pose\) has type std_msgs/msg/String"
                                       r" in the bag; expected geometry_msgs/msg/PoseStamped"):
        replay.replay(replay.parse_args([str(path), "--model", "tiny"]))


def test_truncated_file_is_named(synthetic, tmp_path, capsys) -> None:
    path = synthetic[0].write(tmp_path / "bag")
    (mcap,) = path.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    assert replay.main([str(path), "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert str(mcap) in err and "truncated or damaged" in err


def test_unknown_configuration_and_bad_sweep_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown configurations.*'fast'"):
        replay.configurations(["fast"], [])
    with pytest.raises(ValueError, match="keep_scale"):
        replay.parse_sets(["prune.keep_scale=-1"])
    with pytest.raises(ValueError, match="PruneConfig field"):
        replay.parse_sets(["prune.nonsense=1"])


def test_bag2demos_writes_what_specprune_train_reads(synthetic, tmp_path) -> None:
    bag, published = synthetic
    path = bag.write(tmp_path / "bag")
    out = tmp_path / "demos.hdf5"
    assert bag2demos.main([str(path), str(out)]) == 0
    demos = read_demos(str(out), chunk=8, action_dim=7, proprio_dim=8, image_size=224)
    assert len(demos.names) == 2 and demos.instructions == ["pick up the red cube"] * 2
    # a sample at a chunk's own stamp carries that chunk's first row
    first = min(published)
    rows = [i for i, p in enumerate(demos.actions) if np.allclose(p, published[first][0])]
    assert rows and np.all(np.isfinite(demos.proprio))


SECOND_INSTRUCTION = "put the blue cube on the plate"


def second_instruction_bag(forgets: bool, marker: str = "reset"
                           ) -> Tuple[Any, Dict[float, np.ndarray]]:
    """Two episodes; the second one's instruction logged after its first chunk (the node
    had it, the recorder received it later). With ``forgets`` the node ran with
    reset_forgets_instruction and, when the episode began with ~/reset (``marker``),
    computed every chunk of episode 2 with the new instruction; without, or when the
    episode began with an activation, it stepped on the old one until the new one was
    logged."""
    forgot = forgets and marker == "reset"
    policy = load_policy("tiny", device="cpu", dtype="float32",
                         prune_config=PruneConfig(enabled=False))
    published: Dict[float, np.ndarray] = {}
    second = BASE + 0.05 * (TICKS // 2)
    first_of_second: list = []

    def step(result: Any) -> Tuple[np.ndarray, Any]:
        obs = result.observation
        if obs.stamp >= second - 1e-9:
            first_of_second.append(obs.stamp)
            if forgot or len(first_of_second) > 1:
                obs = dataclasses.replace(obs, instruction=SECOND_INSTRUCTION)
        chunk, _ = policy.step(obs)
        published[obs.stamp] = chunk.actions
        return chunk.actions, policy.layout.action_names

    bag = synthetic_run(TICKS, EVERY, step, episodes=2, marker=marker)
    for when, event in ((BASE - 0.5, disable_pruning_event()),
                        (BASE - 0.4, bool_parameter_event("reset_forgets_instruction",
                                                          forgets))):
        bag.add("/parameter_events", "rcl_interfaces/msg/ParameterEvent", when, event)
    chunk_logged = first_of_second[0] + 0.06  # synthetic_run logs a chunk 60 ms after
    bag.add("/instruction", "std_msgs/msg/String", chunk_logged + 0.001,
            string(SECOND_INSTRUCTION))
    return bag, published


@pytest.mark.parametrize("forgets, marker", [(True, "reset"), (False, "reset"),
                                             (True, "activate")])
def test_replay_pairs_the_instruction_with_the_episode_as_the_node_did(forgets, marker,
                                                                       tmp_path) -> None:
    """reset_forgets_instruction: the first chunk of episode 2 used the new instruction
    although the bag logs it after that chunk; without it, the old one (as the node did),
    and after an activation (a new episode that keeps the instruction) too."""
    bag, published = second_instruction_bag(forgets, marker)
    path = bag.write(tmp_path / "bag")
    out = tmp_path / "replay.json"
    assert replay.main([str(path), "--model", "tiny", "--configs", "unpruned",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 2 and not result["chunks_not_rebuilt"]
    rep = result["reproduces_node"]["unpruned"]
    assert rep["steps_compared"] == len(published) and rep["max_abs_diff"] < 1e-5, rep
