"""specprune-replay and specprune-bag2demos on a bag written with rosbags directly: the
observations the node stepped on are found again (the node's chunk stamped S while later
frames had already arrived), the chunks reproduced, and a missing topic, a wrong type or a
truncated file named."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest

from specprune import PruneConfig, load_policy
from specprune.train.demo_dataset import read_demos
from specprune_ros.eval import bag2demos, replay
from specprune_ros.node.bag_reader import BagError
from bag_helpers import BASE, T, synthetic_run

TICKS, EVERY = 24, 2


def disable_pruning_event() -> Any:
    """What `ros2 param set /specprune_policy prune.enabled false` puts on /parameter_events."""
    value = T["rcl_interfaces/msg/ParameterValue"](
        type=1, bool_value=False, integer_value=0, double_value=0.0, string_value="",
        byte_array_value=np.zeros(0, np.uint8), bool_array_value=np.zeros(0, bool),
        integer_array_value=np.zeros(0, np.int64), double_array_value=np.zeros(0),
        string_array_value=[])
    return T["rcl_interfaces/msg/ParameterEvent"](
        stamp=T["builtin_interfaces/msg/Time"](sec=BASE - 1, nanosec=0),
        node="/specprune_policy", new_parameters=[],
        changed_parameters=[T["rcl_interfaces/msg/Parameter"](
            name="prune.enabled", value=value)],
        deleted_parameters=[])


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
    code = replay.main([str(path), "--model", "tiny", "--configs", "unpruned,specprune,recorded",
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
                            "specprune[keep_scale=2]"}
    assert configs["specprune[keep_scale=0.5]"]["kept_visual_tokens_mean"] < \
        configs["specprune[keep_scale=2]"]["kept_visual_tokens_mean"] < \
        configs["unpruned"]["kept_visual_tokens_mean"]
    assert configs["specprune"]["action_l1_vs_unpruned"] > 0
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
