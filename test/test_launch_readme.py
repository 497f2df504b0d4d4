"""The README's bare-launch walkthrough, command by command, under the real ros2 tools.

README.md marks one bash block (the line ``<!-- test/test_launch_readme.py -->`` above
it): ``ros2 launch specprune_ros policy.launch.py`` without arguments, then ``ros2 param``
commands on the waiting policy node, then ``ros2 lifecycle set ... configure`` and
``... activate`` after naming the model. Here that block is read and checked against the
node's parameter table everywhere; where the ``ros2`` command and this package installed
in a ROS 2 workspace exist, the commands run in order in a subprocess each (the launch in
the background) and their output is checked. ros2cli and launch_ros are not installable
from PyPI, so elsewhere that test skips with the reason; the same flow runs over the
node's own services in test_policy_node.py::TestWithoutAModel.
"""
from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from specprune_ros.node import parameters as params
from specprune_ros.node.policy_messages import next_steps
from ros_helpers import REPO, domain_id, ros_environment

MARKER = "<!-- test/test_launch_readme.py -->"
PLACEHOLDER = "/path/to/checkpoint"
NODE = f"/{params.NODE_NAME}"
TIMEOUT_S = 120.0


def readme_commands() -> List[str]:
    """The commands of the marked README block, comments and prompts stripped."""
    text = (REPO / "README.md").read_text()
    assert MARKER in text, f"README.md has no block marked {MARKER}"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block, "no bash block after the marker"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_readme_walkthrough_is_launch_then_param_then_lifecycle() -> None:
    commands = readme_commands()
    assert commands[0] == "ros2 launch specprune_ros policy.launch.py", commands[0]
    kinds = [shlex.split(c)[1] for c in commands]
    first_lifecycle = kinds.index("lifecycle")
    assert kinds[1:first_lifecycle] == ["param"] * (first_lifecycle - 1)
    assert set(kinds[first_lifecycle:]) == {"lifecycle"}
    transitions = [shlex.split(c)[-1] for c in commands[first_lifecycle:]]
    assert transitions == ["configure", "activate"]
    for command in commands[1:]:
        words = shlex.split(command)
        assert words[3] == NODE, command
        if words[1] == "param" and words[2] in ("get", "set"):
            assert words[4] in params.BY_NAME, f"{command}: no such parameter"
    named = [shlex.split(c) for c in commands if " model " in c]
    assert named and named[0][2:] == ["set", NODE, "model", PLACEHOLDER]


def test_the_node_says_what_the_readme_walkthrough_does() -> None:
    """The line the node logs once at start names the same commands as the README."""
    commands = readme_commands()
    said = next_steps(NODE)
    for command in commands:
        if " model " in command or " lifecycle " in command:
            assert command in said, f"{command!r} not in the node's message: {said}"


# ------------------------------------------------------------------ with the real ros2 tools
def _ros2_missing() -> Optional[str]:
    """Why the walkthrough cannot run here, or None."""
    if shutil.which("ros2") is None:
        return ("the ros2 command (ros2cli) and launch_ros need a ROS 2 installation; they "
                "are not installable from PyPI. The same flow runs over the node's services "
                "in test_policy_node.py::TestWithoutAModel")
    found = subprocess.run(["ros2", "pkg", "prefix", "specprune_ros"], capture_output=True,
                           text=True, timeout=60)
    if found.returncode != 0:
        return "specprune_ros is not installed in this ROS 2 workspace (colcon build)"
    return None


#: what a successful command prints (ros2cli's messages)
EXPECTED = {"list": "prune.keep_scale", "get": "value is:", "set": "Set parameter successful",
            "lifecycle": "Transitioning successful"}


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Dict[str, object]]:
    """The README's launch command in the background, on a domain of its own."""
    reason = _ros2_missing()
    if reason:
        pytest.skip(reason)
    env = ros_environment(tmp_path, domain_id(71))
    out = (tmp_path / "launch.log").open("wb")
    proc = subprocess.Popen(shlex.split(readme_commands()[0]), env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        yield {"proc": proc, "env": env, "log": tmp_path / "launch.log"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=30)
        out.close()
        subprocess.run(["ros2", "daemon", "stop"], env=env, capture_output=True, timeout=60)


def _run(command: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(shlex.split(command), env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _echo(topic: str, msg_type: str, env: Dict[str, str], seconds: float) -> str:
    """What `ros2 topic echo --once` prints on ``topic`` within ``seconds`` (then SIGINT)."""
    echo = subprocess.Popen(["ros2", "topic", "echo", "--once", topic, msg_type], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        return echo.communicate(timeout=seconds)[0]
    except subprocess.TimeoutExpired:
        echo.send_signal(signal.SIGINT)
        return echo.communicate(timeout=30)[0]


def test_readme_walkthrough_runs_under_the_real_ros2_tools(launched) -> None:
    proc, env, log = launched["proc"], launched["env"], launched["log"]
    said = next_steps(NODE).split(". Next:")[0]
    deadline = time.monotonic() + TIMEOUT_S
    while said not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.5)
    checkpoint = str(Path(_run("ros2 pkg prefix specprune_ros", env).stdout.strip())
                     / "share" / "specprune_ros" / "checkpoints" / "pick_color")
    for command in readme_commands()[1:]:
        if " lifecycle " in command and "configure" in command:
            # before a model is loaded nothing is published on the chunk topic
            echo = _echo("/specprune/action_chunk", "trajectory_msgs/msg/JointTrajectory", env,
                         3.0)
            assert "points:" not in echo, echo
        result = _run(command.replace(PLACEHOLDER, checkpoint), env)
        kind = shlex.split(command)[2] if " param " in command else "lifecycle"
        assert result.returncode == 0 and EXPECTED[kind] in result.stdout, (
            command, result.stdout, result.stderr)
    rejected = _run(f"ros2 param set {NODE} prune.keep_scale -1", env)
    assert "Setting parameter failed" in rejected.stdout + rejected.stderr
    state = _run(f"ros2 lifecycle get {NODE}", env)
    assert state.stdout.strip().startswith("active"), state.stdout
    assert log.read_text(errors="replace").count(said) == 1
    assert proc.poll() is None, log.read_text(errors="replace")
