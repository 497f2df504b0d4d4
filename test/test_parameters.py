"""One parameter table: config/policy.yaml, the node's declarations and PruneConfig agree."""
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock

from specprune import PruneConfig, field_specs
from specprune_ros.node import parameters as params
from specprune_ros.node.param_table import flatten
from specprune_ros.node.policy_node import PolicyNode, StartupError
from ros_helpers import domain_id

CONFIG = Path(__file__).resolve().parents[1] / "config" / "policy.yaml"
#: declared by rclpy itself on every node
RCLPY_OWN = {"use_sim_time", "start_type_description_service"}


def yaml_values() -> dict:
    tree = yaml.safe_load(CONFIG.read_text())
    return flatten(tree[params.NODE_NAME]["ros__parameters"])


# ------------------------------------------------------------------ the yaml
def test_policy_yaml_is_generated_from_the_table() -> None:
    assert CONFIG.read_text() == params.render_yaml(), (
        "config/policy.yaml is out of date: python -m specprune_ros.node.parameters --write "
        "config/policy.yaml")


def test_yaml_holds_every_parameter_with_its_default_and_type() -> None:
    values = yaml_values()
    assert set(values) == set(params.BY_NAME)
    for spec in params.PARAMS:
        assert values[spec.name] == spec.default, spec.name
        assert type(values[spec.name]) is type(spec.default), spec.name


def test_every_yaml_key_follows_its_documentation_comment() -> None:
    lines = CONFIG.read_text().splitlines()
    for spec in params.PARAMS:
        key = spec.field if spec.is_prune else spec.name
        index = next(i for i, line in enumerate(lines)
                     if line.strip().startswith(f"{key}:") and line.startswith(" " * 4))
        comment = []
        for line in reversed(lines[:index]):
            if not line.strip().startswith("#"):
                break
            comment.insert(0, line.strip()[1:].strip())
        text = " ".join(comment)
        assert spec.description.split()[0] in text and spec.constraints() in text, spec.name
    assert max(len(line) for line in lines) <= 99


def test_every_parameter_is_documented() -> None:
    for spec in params.PARAMS:
        assert len(spec.description) > 10, spec.name


# ------------------------------------------------------------------ derivation from the core
def test_prune_parameters_mirror_field_specs() -> None:
    specs = field_specs()
    assert {s.field for s in params.PRUNE_PARAMS} == set(specs)
    for spec in params.PRUNE_PARAMS:
        source = specs[spec.field]
        default = list(source["default"]) if isinstance(source["default"], tuple) \
            else source["default"]
        assert spec.default == default and type(spec.default) is type(default)
        assert (spec.lo, spec.hi) == (source["min"], source["max"])
        assert spec.description == source["doc"]
        assert spec.read_only is not source["live"]


def test_prune_config_from_parameter_values() -> None:
    cfg = params.prune_config({"prune.keep_scale": 2, "prune.layer_prune_layers": [6, 12],
                               "control_rate_hz": 20.0})
    assert cfg == PruneConfig().updated(keep_scale=2.0, layer_prune_layers=(6, 12))
    with pytest.raises(ValueError, match="fine_exit_trans_speed"):
        params.prune_config({"prune.fine_exit_trans_speed": 0.01})


def test_choices_are_checked() -> None:
    assert params.check_values({"ee_motion_source": "policy"}) is None
    assert "ee_motion_source must be one of" in params.check_values(
        {"ee_motion_source": "odometry"})


# ------------------------------------------------------------------ the node's declarations
@pytest.fixture(scope="module")
def context() -> Iterator[Context]:
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id(41))
    yield ctx
    rclpy.try_shutdown(context=ctx)
    if saved is None:
        os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE")
    else:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved


def make_node(context: Context, **overrides) -> PolicyNode:
    """A configured, active node (what autostart does); StartupError with the reason."""
    values = {"model": "tiny", "allow_preset_model": True, **overrides}
    node = PolicyNode(context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in values.items()])
    try:
        node.bring_up()
    except StartupError:
        node.destroy_node()
        raise
    return node


@pytest.fixture(scope="module")
def node(context: Context) -> Iterator[PolicyNode]:
    policy_node = make_node(context)
    yield policy_node
    policy_node.trigger_shutdown()
    policy_node.destroy_node()


def test_node_declares_exactly_the_table(node: PolicyNode) -> None:
    declared = set(node._parameters) - RCLPY_OWN
    assert declared == set(params.BY_NAME) == set(yaml_values())


def test_node_descriptors_carry_ranges_docs_and_read_only(node: PolicyNode) -> None:
    specs = field_specs()
    for desc in node.describe_parameters(list(params.BY_NAME)):
        spec = params.BY_NAME[desc.name]
        assert desc.description == spec.description and desc.read_only == spec.read_only
        assert spec.constraints() == desc.additional_constraints
        if spec.is_prune:
            lo, hi = specs[spec.field]["min"], specs[spec.field]["max"]
            ranges = list(desc.floating_point_range) + list(desc.integer_range)
            if lo is None:
                assert not ranges, desc.name
            else:
                assert [(r.from_value, r.to_value) for r in ranges] == [(lo, hi)], desc.name
    structural = ("layout", "camera_topics", "camera_transport", "autostart",
                  "allow_preset_model")
    assert all(params.BY_NAME[name].read_only for name in structural)
    until_configure = ("model", "device", "dtype", "action_layout", "torch_threads")
    assert all(params.BY_NAME[name].until_configure and not params.BY_NAME[name].read_only
               for name in until_configure)


def test_the_model_is_settable_while_unconfigured_and_refused_once_configured(
        context: Context, node: PolicyNode) -> None:
    waiting = PolicyNode(context=context)  # no model: bring_up leaves it unconfigured
    try:
        waiting.bring_up()
        assert waiting._policy is None
        assert waiting.set_parameters([Parameter("model", value="tiny")])[0].successful
        assert waiting.get_parameter("model").value == "tiny"
    finally:
        waiting.destroy_node()
    refused = node.set_parameters([Parameter("model", value="oft-cpu")])[0]
    assert not refused.successful
    assert refused.reason.startswith("model is read by configure and a model is loaded: "
                                     "`ros2 lifecycle set /specprune_policy deactivate`")
    assert node.get_parameter("model").value == "tiny"


def test_bad_start_values_stop_the_node_with_a_reason(context: Context) -> None:
    with pytest.raises(StartupError, match="prune.keep_scale"):
        make_node(context, **{"prune.keep_scale": 50.0})
    with pytest.raises(StartupError, match="fine_exit_rot_speed"):
        make_node(context, **{"prune.fine_exit_rot_speed": 0.5})
    with pytest.raises(StartupError, match="camera_transport must be one of"):
        make_node(context, camera_transport="theora")
    with pytest.raises(StartupError, match="takes 2 views"):
        make_node(context, camera_topics=["/only_one"])
    with pytest.raises(StartupError, match="cannot load model"):
        make_node(context, model="/nonexistent/checkpoint")


def test_tf_source_is_rejected_with_the_reason_where_tf2_ros_is_missing(
        context: Context) -> None:
    from specprune_ros.node.tf_motion import tf_unavailable_reason
    if tf_unavailable_reason() is None:
        pytest.skip("tf2_ros is importable here")
    with pytest.raises(StartupError, match="tf2_ros"):
        make_node(context, ee_motion_source="tf")


# ------------------------------------------------------------------ item 5 of issue #13
def test_integer_for_a_double_is_converted_then_range_checked(node: PolicyNode) -> None:
    results = node.set_parameters([Parameter("prune.keep_scale", value=2)])
    assert results[0].successful, results[0].reason
    value = node.get_parameter("prune.keep_scale")
    assert value.type_ == Parameter.Type.DOUBLE and value.value == 2.0
    assert node._prune.keep_scale == 2.0
    out_of_range = node.set_parameters([Parameter("prune.keep_scale", value=50)])[0]
    assert not out_of_range.successful and "out of range" in out_of_range.reason
    bad_type = node.set_parameters([Parameter("prune.keep_scale", value="2")])[0]
    assert not bad_type.successful and "Wrong parameter type" in bad_type.reason
    assert node.set_parameters([Parameter("prune.keep_scale", value=1.0)])[0].successful


def test_integer_override_of_a_double_is_accepted_at_start(context: Context) -> None:
    started = make_node(context, **{"prune.keep_scale": 2, "max_view_skew_s": 0})
    try:
        assert started.get_parameter("prune.keep_scale").value == 2.0
        assert started.get_parameter("max_view_skew_s").type_ == Parameter.Type.DOUBLE
    finally:
        started.trigger_shutdown()
        started.destroy_node()


def test_layer_lists_are_checked_against_the_loaded_model(node: PolicyNode) -> None:
    depth = node._policy.model.num_layers  # the tiny preset: 4
    rejected = node.set_parameters([Parameter("prune.global_score_layers", value=[99])])[0]
    assert not rejected.successful
    assert rejected.reason == (f"prune.global_score_layers: layers [99] do not exist in the "
                               f"loaded model, which has {depth} decoder layers (valid indices "
                               f"{-depth}..{depth - 1})")
    assert list(node.get_parameter("prune.global_score_layers").value) == [14, -1]
    ok = node.set_parameters([Parameter("prune.global_score_layers", value=[1, -1])])[0]
    assert ok.successful, ok.reason
    default = params.BY_NAME["prune.global_score_layers"].default  # 32-layer indices: exempt
    assert node.set_parameters([Parameter("prune.global_score_layers",
                                          value=default)])[0].successful
    bad_prune = node.set_parameters([Parameter("prune.layer_prune_layers", value=[2, 4])])[0]
    assert not bad_prune.successful and "layers [4] do not exist" in bad_prune.reason


def test_layer_list_beyond_the_model_stops_configure(context: Context) -> None:
    with pytest.raises(StartupError, match=r"global_score_layers: layers \[99\] do not exist"):
        make_node(context, **{"prune.global_score_layers": [99]})


def test_preset_or_no_model_is_refused_without_allow_preset_model(context: Context) -> None:
    with pytest.raises(StartupError, match="preset with random weights"):
        make_node(context, allow_preset_model=False)
    unnamed = PolicyNode(context=context)
    try:
        unnamed.bring_up()  # without a model autostart waits: configure is never tried
        assert unnamed._policy is None and not unnamed.error
        assert unnamed.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert unnamed.error.startswith("no model named")
    finally:
        unnamed.destroy_node()


def test_layer_lists_written_for_layer_depth_are_checked_against_it(node: PolicyNode) -> None:
    assert node.set_parameters([Parameter("prune.layer_depth", value=32)])[0].successful
    try:
        ok = node.set_parameters([Parameter("prune.global_score_layers", value=[25, -1])])[0]
        assert ok.successful, ok.reason  # layer 25 of 32: layer 3 of the tiny preset's 4
        rejected = node.set_parameters([Parameter("prune.layer_prune_layers",
                                                  value=[5, 40])])[0]
        assert not rejected.successful
        assert rejected.reason == ("prune.layer_prune_layers: layers [40] do not exist in a "
                                   "model of prune.layer_depth 32 decoder layers (valid "
                                   "indices -32..31)")
    finally:
        node.set_parameters([Parameter("prune.global_score_layers", value=[14, -1]),
                             Parameter("prune.layer_depth", value=0)])


def test_a_backward_clock_step_drops_buffered_inputs_and_resets_the_policy(
        context: Context) -> None:
    """use_sim_time: /clock stepping back 0.3 s reaches the node through rclpy's time-jump
    callback, which forgets the builder's samples of the old timeline."""
    sim_node = make_node(context, use_sim_time=True)
    probe = rclpy.create_node("clock_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(sim_node)
    executor.add_node(probe)
    calls = []
    builder = sim_node._builder
    forget = builder.time_jumped
    builder.time_jumped = lambda: (calls.append(sim_node.get_clock().now()), forget())
    clock_pub = probe.create_publisher(Clock, "/clock", 10)
    try:
        deadline = time.monotonic() + 20.0
        for stamp in [100.0 + 0.05 * i for i in range(10)] + [99.9]:
            clock_pub.publish(Clock(clock=rclpy.time.Time(seconds=stamp).to_msg()))
            for _ in range(5):
                executor.spin_once(timeout_sec=0.02)
        while not calls and time.monotonic() < deadline:
            clock_pub.publish(Clock(clock=rclpy.time.Time(seconds=99.9).to_msg()))
            executor.spin_once(timeout_sec=0.05)
        assert len(calls) == 1, calls  # the step back only, not the steps forward
    finally:
        executor.shutdown()
        probe.destroy_node()
        sim_node.trigger_shutdown()
        sim_node.destroy_node()


def observation_result(node: PolicyNode, instruction: str = "pick"):
    """A BuildResult the node's model takes (grey frames, zero proprio, stamped now)."""
    from specprune import Observation
    from specprune_ros.node.observation_builder import BuildResult

    size = int(node._values["image_height"]), int(node._values["image_width"])
    images = [np.full((*size, 3), 100, np.uint8) for _ in node._values["camera_topics"]]
    proprio = np.zeros(node._policy.layout.proprio_dim)
    return BuildResult(observation=Observation(images, instruction, proprio),
                       received=time.monotonic(), header_stamp=node.get_clock().now().to_msg())


@pytest.fixture
def chunk_spy(node: PolicyNode) -> Iterator[list]:
    """The chunks the node publishes (the real publisher still sends them); the policy's
    step, ~/enable and the instruction parameter restored afterwards."""
    from std_srvs.srv import SetBool

    published: list = []
    real_publish, real_step = node._chunk_pub.publish, node._policy.step

    def spy(msg) -> None:
        published.append(msg)
        real_publish(msg)

    node._chunk_pub.publish = spy
    node.set_parameters([Parameter("instruction", value="pick")])
    try:
        yield published
    finally:
        node._chunk_pub.publish, node._policy.step = real_publish, real_step
        node._on_enable(SetBool.Request(data=True), SetBool.Response())
        node.set_parameters([Parameter("instruction", value="")])


def during_step(node: PolicyNode, action) -> None:
    """Make the policy's next steps run ``action`` after the model, before returning."""
    real_step = node._policy.step

    def step_then(obs):
        out = real_step(obs)
        action()
        return out
    node._policy.step = step_then


def test_no_chunk_leaves_once_enable_false_has_answered(node: PolicyNode, chunk_spy) -> None:
    """~/enable false arriving while a step runs: that step's chunk is withheld (counted),
    so a caller that got the answer never sees another chunk. Before the fix the worker read
    ``enabled`` before the step only; the lifecycle test over DDS caught it under load."""
    from std_srvs.srv import SetBool

    withheld = node._shared.counters.withheld
    node._step(observation_result(node), time.monotonic())  # enabled throughout: published
    assert len(chunk_spy) == 1 and node._shared.counters.withheld == withheld
    during_step(node, lambda: node._on_enable(SetBool.Request(data=False), SetBool.Response()))
    node._step(observation_result(node), time.monotonic())
    assert len(chunk_spy) == 1 and node._shared.counters.withheld == withheld + 1
    assert node._shared.counters.values()["chunks_withheld"] == withheld + 1


def test_a_live_instruction_change_withholds_the_chunk_of_the_old_one(
        node: PolicyNode, chunk_spy) -> None:
    """`ros2 param set ... instruction` answered during a step: the chunk computed for the
    old instruction does not go out; the next step, on the new one, does."""
    assert node.set_parameters([Parameter("instruction", value="pick")])[0].successful
    during_step(node, lambda: node.set_parameters([Parameter("instruction", value="place")]))
    node._step(observation_result(node, "pick"), time.monotonic())
    assert chunk_spy == []
    node._step(observation_result(node, "place"), time.monotonic())
    assert len(chunk_spy) == 1


def test_after_reset_no_frame_taken_before_it_is_stepped_on(node: PolicyNode) -> None:
    """~/reset: frames already buffered (or still in transit) are the old episode's; the
    first build waits for frames stamped after the reset."""
    from std_srvs.srv import Trigger

    from specprune_ros.node.observation_builder import NO_NEW_FRAMES

    builder = node._builder
    before = node.get_clock().now().nanoseconds * 1e-9 - 0.05
    size = int(node._values["image_height"]), int(node._values["image_width"])
    for stamp in (before - 0.05, before, before + 0.05, before + 0.1):
        joints = builder.layout.watched_joints
        builder.set_joint_state(joints, [0.0] * len(joints), stamp)
        builder.add_pose((0.4, 0.0, 0.2), (1.0, 0.0, 0.0, 0.0), stamp, node._values["base_frame"])
    for view in range(len(builder.views)):  # without the reset these would be stepped on
        builder.add_frame(view, np.zeros((*size, 3), np.uint8), before - 0.01)
    assert builder.build(before + 0.06, "pick").observation is not None
    for view in range(len(builder.views)):
        builder.add_frame(view, np.zeros((*size, 3), np.uint8), before)
    assert node._on_reset(Trigger.Request(), Trigger.Response()).success
    late_before = builder.match_counters()["frames_late"]
    builder.add_frame(0, np.zeros((*size, 3), np.uint8), before + 0.01)  # in transit
    assert builder.match_counters()["frames_late"] == late_before + 1
    result = builder.build(before + 0.06, "pick")
    assert result.observation is None and result.waiting == NO_NEW_FRAMES
