"""The requirement sets stay split (issue #13): a robot with ROS 2 installs only the core
set, which must hold no ROS wheel and no test tool; machines without ROS (CI) install all
three through scripts/setup.sh."""
import re
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
SETS = ("requirements-core.txt", "requirements-ros-pypi.txt", "requirements-test.txt")


def pins(name: str) -> Dict[str, str]:
    """{package: version} of a requirement file; every line must be an exact pin."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", line)
            assert match, f"{name}: {line!r} is not an exact pin"
            out[match.group(1).lower()] = match.group(2)
    return out


def test_core_set_holds_no_ros_wheel_and_no_test_tool() -> None:
    core = pins("requirements-core.txt")
    assert not [p for p in core if p.startswith("ros-")]
    assert not {"pytest", "flake8"} & set(core)
    assert {"torch", "transformers", "mujoco", "robosuite"} <= set(core)


def test_ros_set_is_only_ros_wheels_including_lifecycle() -> None:
    ros = pins("requirements-ros-pypi.txt")
    assert all(p.startswith("ros-") for p in ros), ros
    assert {"ros-rclpy", "ros-lifecycle-msgs", "ros-ament-index-python"} <= set(ros)


def test_pytest_stays_below_9_for_launch_testing() -> None:
    major = int(pins("requirements-test.txt")["pytest"].split(".")[0])
    assert major < 9


def test_sets_do_not_overlap_and_setup_installs_all_three() -> None:
    names = [set(pins(name)) for name in SETS]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f"REQUIREMENTS=({' '.join(SETS)})" in setup
    assert not (ROOT / "requirements.txt").exists(), "one file with everything is back"
