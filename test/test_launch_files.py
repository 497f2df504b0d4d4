"""The launch files, read without launch / launch_ros (not installable from PyPI; the
launched end-to-end tests are test_launch*.py, run in a ROS 2 workspace): every executable
is a console script, every parameter they set is declared by its node, every topic they
remap is a node's default, the robot path names no model by default (the policy node then
waits for one), each process has its shutdown timeouts and ends the launch when it exits."""
import ast
import re
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest

from specprune_ros.node import executor_parameters, parameters, recorder
from specprune_ros.sim import sim_bridge_node

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = sorted((ROOT / "launch").glob("*.launch.py"))
DECLARED: Set[str] = ({s.name for s in parameters.PARAMS} | {s.name for s in
                      executor_parameters.PARAMS} | {s.name for s in sim_bridge_node.PARAMS}
                      | {s.name for s in recorder.PARAMS} | {"use_sim_time"})


def calls(tree: ast.AST, name: str) -> List[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
        getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


def keywords(call: ast.Call) -> Dict[str, ast.AST]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def assigned(tree: ast.AST, name: str) -> Any:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned")


@pytest.fixture(params=LAUNCH, ids=[p.name for p in LAUNCH])
def launch_file(request) -> Path:
    return request.param


def test_launch_files_define_a_description(launch_file: Path) -> None:
    tree = ast.parse(launch_file.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)


def test_executables_are_console_scripts(launch_file: Path) -> None:
    scripts = set(re.findall(r'"(\w+) = ', (ROOT / "setup.py").read_text()))
    text = launch_file.read_text()
    named = set(re.findall(r'executable="(\w+)"', text)) | set(re.findall(
        r'_node\("(\w+)"', text))
    assert named and named <= scripts, named - scripts


def test_parameters_set_by_launch_are_declared_by_the_nodes(launch_file: Path) -> None:
    text = launch_file.read_text()
    names = set(re.findall(r'"(\w+)": LaunchConfiguration', text)) | set(re.findall(
        r'(\w+)=(?:ParameterValue\()?LaunchConfiguration\("', text))
    names -= {"default_value"} | set(included_arguments(ast.parse(text)))
    names = {n for n in names if not n.endswith("_topic") or n in DECLARED}
    assert names and names <= DECLARED, names - DECLARED


def test_every_process_has_shutdown_timeouts_and_ends_the_launch(launch_file: Path) -> None:
    tree = ast.parse(launch_file.read_text())
    nodes = calls(tree, "Node") + calls(tree, "LifecycleNode")
    assert nodes
    for node in nodes:
        kw = keywords(node)
        assert {"sigterm_timeout", "sigkill_timeout", "on_exit"} <= set(kw), ast.dump(node)


def included_arguments(tree: ast.AST) -> List[str]:
    """The launch arguments passed to an included launch file (launch_arguments={...})."""
    out = []
    for call in calls(tree, "IncludeLaunchDescription"):
        value = keywords(call).get("launch_arguments")
        dicts = [n for n in ast.walk(value) if isinstance(n, ast.Dict)] if value else []
        out += [k.value for d in dicts for k in d.keys if isinstance(k, ast.Constant)]
    return out


def test_included_arguments_are_declared_by_the_included_file() -> None:
    sim = ast.parse((ROOT / "launch" / "sim_policy.launch.py").read_text())
    policy = ast.parse((ROOT / "launch" / "policy.launch.py").read_text())
    passed = set(included_arguments(sim))
    assert {"record", "bag", "model"} <= passed
    assert passed <= set(declared_arguments(policy)), passed - set(declared_arguments(policy))


def declared_arguments(tree: ast.AST) -> Dict[str, Dict[str, ast.AST]]:
    """Launch argument name -> its DeclareLaunchArgument keywords (literal names only)."""
    return {c.args[0].value: keywords(c) for c in calls(tree, "DeclareLaunchArgument")
            if c.args and isinstance(c.args[0], ast.Constant)}


def test_robot_path_names_no_model_by_default_and_manages_both_nodes() -> None:
    """The bare command starts both nodes; the policy node then waits for a model (its
    empty default, passed as a string: yaml would turn '' into None and fail the launch)."""
    text = (ROOT / "launch" / "policy.launch.py").read_text()
    tree = ast.parse(text)
    arguments = declared_arguments(tree)
    assert ast.literal_eval(arguments["model"]["default_value"]) == ""
    assert 'model=ParameterValue(LaunchConfiguration("model"), value_type=str)' in text
    assert calls(tree, "LifecycleNode")
    plain = calls(tree, "Node")  # only the recorder, and only with record:=true
    assert [keywords(n)["executable"].value for n in plain] == ["specprune_recorder"]
    assert "condition" in keywords(plain[0])
    assert ast.literal_eval(arguments["record"]["default_value"]) == "false"
    assert ast.literal_eval(arguments["autostart"]["default_value"]) == "true"
    assert ast.literal_eval(arguments["allow_preset_model"]["default_value"]) == "false"
    assert ast.literal_eval(arguments["dry_run"]["default_value"]) == "false"


def test_remapped_topics_are_the_nodes_default_topics() -> None:
    tree = ast.parse((ROOT / "launch" / "policy.launch.py").read_text())
    topics = assigned(tree, "TOPICS")
    defaults = {s.default for s in parameters.PARAMS + executor_parameters.PARAMS
                if isinstance(s.default, str)}
    defaults |= set(parameters.BY_NAME["camera_topics"].default)
    missing = {arg: d for arg, (d, _) in topics.items() if d not in defaults}
    assert not missing, missing


def test_simulation_uses_its_clock_and_the_executor_sim_overrides() -> None:
    text = (ROOT / "launch" / "sim_policy.launch.py").read_text()
    assert '"publish_clock": LaunchConfiguration("use_sim_time")' in text
    assert '"command_input": LaunchConfiguration("output")' in text
    assert "executor_sim.yaml" in text and (ROOT / "config" / "executor_sim.yaml").exists()


def test_simulation_forgets_the_instruction_at_reset_and_the_robot_path_keeps_it() -> None:
    """The bridge publishes a new instruction per episode, maybe after its new frames: the
    simulated path waits for it after ~/reset; a robot's instruction may be published once
    (latched), so the robot path keeps it unless told otherwise."""
    sim = ast.parse((ROOT / "launch" / "sim_policy.launch.py").read_text())
    policy = ast.parse((ROOT / "launch" / "policy.launch.py").read_text())
    passed = {}
    for call in calls(sim, "IncludeLaunchDescription"):
        for d in [n for n in ast.walk(keywords(call)["launch_arguments"])
                  if isinstance(n, ast.Dict)]:
            passed.update({k.value: v for k, v in zip(d.keys, d.values)
                           if isinstance(k, ast.Constant)})
    assert ast.literal_eval(passed["reset_forgets_instruction"]) == "true"
    default = declared_arguments(policy)["reset_forgets_instruction"]["default_value"]
    assert ast.literal_eval(default) == "false"
    assert parameters.BY_NAME["reset_forgets_instruction"].default is False


def test_overlay_files_default_to_the_file_they_overlay() -> None:
    """A robot's own params_file / executor_params_file is not overwritten by the shipped
    yaml through an overlay left at its default: each overlay defaults to the file it is
    laid over (loaded twice, changing nothing), and the nodes load them in that order."""
    text = (ROOT / "launch" / "policy.launch.py").read_text()
    arguments = declared_arguments(ast.parse(text))
    for overlay, base in (("policy_task_file", "params_file"),
                          ("executor_overrides_file", "executor_params_file"),
                          ("executor_task_file", "executor_overrides_file")):
        default = arguments[overlay]["default_value"]
        assert isinstance(default, ast.Call) and default.func.id == "LaunchConfiguration"
        assert ast.literal_eval(default.args[0]) == base, overlay
    assert ('LaunchConfiguration("params_file"), LaunchConfiguration("policy_task_file")'
            in text)
    order = [text.index(f'LaunchConfiguration("{name}"),\n') for name in (
        "executor_params_file", "executor_overrides_file", "executor_task_file")]
    assert order == sorted(order)


def test_simulation_takes_its_task_and_wires_it_as_the_evaluation_does() -> None:
    """task:=<suite>:<index> starts the LIBERO bridge: the files and horizon come from
    task_wiring (what specprune-eval --via ros reads), each handed to its node after the
    node's usual files; our tasks get the usual files only."""
    text = (ROOT / "launch" / "sim_policy.launch.py").read_text()
    tree = ast.parse(text)
    arguments = declared_arguments(tree)
    assert ast.literal_eval(arguments["task"]["default_value"]) == "pick_color"
    convention = arguments["gripper_convention"]
    assert tuple(ast.literal_eval(convention["choices"])) == sim_bridge_node.GRIPPER_CONVENTIONS
    assert ast.literal_eval(convention["default_value"]) == "env"
    assert "from specprune_ros.sim.task_wiring import task_wiring" in text
    opaque = calls(tree, "OpaqueFunction")
    assert [keywords(c)["function"].id for c in opaque] == ["_task_nodes"]
    assert 'task_wiring(LaunchConfiguration("task").perform(context))' in text
    for use in ('path(wiring.bridge_file)', 'bridge_overrides["horizon"] = wiring.horizon',
                '"policy_task_file": path(wiring.policy_file or "config/policy.yaml")',
                '"executor_task_file": path(wiring.executor_file or '
                '"config/executor_sim.yaml")'):
        assert use in text, use
    # the bridge's own file before the task's, the launch's values last
    assert text.index('path("config/sim_arm.yaml")') < text.index("path(wiring.bridge_file)")
    assert '"task": wiring.task' in text
