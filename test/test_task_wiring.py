"""What a task needs beyond the nodes' usual parameter files (task_wiring), the one answer
sim_policy.launch.py and specprune-eval --via ros share; and the LIBERO files agreeing with
each other and with the protocol (world frame, 256 px frames, camera rate)."""
from pathlib import Path

import pytest
import yaml

from specprune_ros.node import executor_parameters, parameters
from specprune_ros.sim import sim_bridge_node
from specprune_ros.sim.libero_protocol import ENV_IMAGE_SIZE, SUITE_MAX_STEPS
from specprune_ros.sim.task_wiring import TaskWiring, task_wiring

ROOT = Path(__file__).resolve().parents[1]


def _params(relative: str, node: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())[node]["ros__parameters"]


def test_our_tasks_need_nothing_more() -> None:
    assert task_wiring("pick_color") == TaskWiring("pick_color")
    assert task_wiring("lift").bridge_file is None


@pytest.mark.parametrize("suite", ["libero_spatial", "libero_object", "libero_goal",
                                   "libero_10"])
def test_a_libero_task_gets_one_file_per_node_and_the_suites_step_limit(suite: str) -> None:
    wiring = task_wiring(f"{suite}:3")
    assert (wiring.bridge_file, wiring.policy_file, wiring.executor_file) == (
        "config/libero_arm.yaml", "config/policy_libero.yaml", "config/executor_libero.yaml")
    assert wiring.horizon == SUITE_MAX_STEPS[suite]
    assert wiring.task == f"{suite}:3"


@pytest.mark.parametrize("name, reason", [("libero_object:all", "libero_spatial:0"),
                                          ("libero_object:x", "libero_spatial:0"),
                                          ("libero_nope:0", "no step limit")])
def test_a_malformed_task_is_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        task_wiring(name)


def test_the_libero_files_agree_on_the_frame_the_image_size_and_the_camera_rate() -> None:
    wiring = task_wiring("libero_goal:0")
    bridge = _params(wiring.bridge_file, "specprune_sim_arm")
    policy = _params(wiring.policy_file, parameters.NODE_NAME)
    executor = _params(wiring.executor_file, executor_parameters.NODE_NAME)
    assert bridge["base_frame_id"] == policy["base_frame"] == executor["base_frame"] == "world"
    assert bridge["camera_size"] == ENV_IMAGE_SIZE
    assert policy["image_width"] == policy["image_height"] == ENV_IMAGE_SIZE
    # one policy step per rendered frame pair
    assert policy["inference_rate_hz"] == bridge["camera_rate_hz"]


def test_every_value_in_the_libero_files_is_a_parameter_of_its_node_in_range() -> None:
    """Declared by the node, of its type, inside its range: the node would take it."""
    wiring = task_wiring("libero_10:0")
    for relative, node, specs in (
            (wiring.bridge_file, "specprune_sim_arm", sim_bridge_node.PARAMS),
            (wiring.policy_file, parameters.NODE_NAME, parameters.PARAMS),
            (wiring.executor_file, executor_parameters.NODE_NAME, executor_parameters.PARAMS)):
        by_name = {s.name: s for s in specs}
        values = _params(relative, node)
        assert values and set(values) <= set(by_name), (relative, set(values) - set(by_name))
        for name, value in values.items():
            spec = by_name[name]
            kind = float if isinstance(spec.default, float) else type(spec.default)
            assert isinstance(value, kind) or (kind is float and isinstance(value, int)), name
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert (spec.lo is None or value >= spec.lo) and (
                    spec.hi is None or value <= spec.hi), (relative, name, value)
            if spec.choices:
                assert value in spec.choices, (relative, name, value)
    assert parameters.check_values(_params(wiring.policy_file, parameters.NODE_NAME)) is None
