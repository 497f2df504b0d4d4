"""The package layout is the architecture: imports point down the rooms only, the core
never imports ROS, and no module imports itself back through others.

Reads every import statement (module level and inside functions) with ``ast``; nothing is
imported, so a violation is found even in a path no other test runs. The robot-side modules
are then imported for real, each in a fresh interpreter: none may load torch."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("specprune", "specprune_ros")
#: room -> the rooms its modules may import (a room may always import itself)
ALLOWED: Dict[str, Set[str]] = {
    "core.leaf": set(),
    "core.model": {"core.leaf"},
    "core.prune": {"core.leaf", "core.model"},
    "core.face": {"core.leaf", "core.model", "core.prune"},
    "core.train": {"core.leaf", "core.model", "core.prune", "core.face"},
    "ros.node": {"core.leaf", "core.model", "core.prune", "core.face"},
    "ros.sim": {"core.leaf", "core.model", "core.prune", "core.face", "ros.node"},
    "ros.eval": {"core.leaf", "core.model", "core.prune", "core.face", "core.train",
                 "ros.node", "ros.sim"},
    "ros.app": {"core.leaf", "core.model", "core.prune", "core.face", "core.train",
                "ros.node", "ros.sim", "ros.eval"},
}
ROS_ROOTS = ("rclpy", "rcl_interfaces", "tf2_ros", "cv_bridge", "launch", "launch_ros",
             "ament_index_python", "lifecycle_msgs", "builtin_interfaces", "specprune_ros")


def _modules() -> Dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "specprune":
        if len(parts) > 1 and parts[1] in ("model", "prune", "train"):
            return f"core.{parts[1]}"
        if len(parts) > 1 and parts[1] in ("config", "types"):
            return "core.leaf"
        return "core.face"
    if len(parts) > 1 and parts[1] in ("node", "sim", "eval"):
        return f"ros.{parts[1]}"
    return "ros.app"


def imported_names(module: str) -> List[str]:
    """Absolute names of everything ``module`` imports (relative imports resolved)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.append(base)
            # "from pkg import submodule" imports the submodule
            names += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return names


def project_imports(module: str) -> Set[str]:
    out = set()
    for name in imported_names(module):
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_rooms(module):
    mine = room(module)
    wrong = sorted(f"{dep} ({room(dep)})" for dep in project_imports(module)
                   if room(dep) != mine and room(dep) not in ALLOWED[mine])
    assert not wrong, f"{module} ({mine}) may not import {wrong}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("specprune.")
                                          or m == "specprune"))
def test_core_never_imports_ros(module):
    ros = [n for n in imported_names(module)
           if n.split(".")[0] in ROS_ROOTS or n.split(".")[0].endswith(("_msgs", "_srvs"))]
    assert not ros, f"{module} imports ROS: {ros}"


def test_no_import_circles():
    graph = {m: project_imports(m) for m in MODULES}
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_rule_reader_sees_a_violation():
    """The checks above can fail: a known downward import is found, and the room table
    rejects its reverse."""
    assert "specprune.model.modeling_vla" in project_imports("specprune.prune.pruning_hooks")
    assert room("specprune.prune.pruning_hooks") not in ALLOWED["core.model"]
    assert "specprune_ros.node.policy_messages" in project_imports("specprune_ros.eval.eval_ros")
    assert room("specprune_ros.eval.eval_ros") not in ALLOWED["ros.node"]


# ------------------------------------------------------------------------------ robot side
#: what runs next to the robot's driver, often on a small computer while the policy runs
#: elsewhere: numpy and rclpy, never torch / transformers (issue #18: 11 s of imports and
#: 830 MB RSS when the executor read its action layouts from specprune.model.presets)
ROBOT_SIDE = ("specprune_ros.node.executor_node", "specprune_ros.node.executor_parameters",
              "specprune_ros.node.safety_envelope", "specprune_ros.node.chunk_timing",
              "specprune_ros.node.observation_builder", "specprune_ros.node.ee_motion",
              "specprune_ros.node.quaternions", "specprune_ros.node.input_faults",
              "specprune_ros.sim.sim_bridge_node",
              "specprune.model.layouts", "specprune")
HEAVY = ("torch", "transformers", "timm")


def heavy_imports(module: str) -> List[str]:
    """The heavy packages a fresh interpreter holds after ``import module``."""
    code = (f"import sys, {module}\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("module", ROBOT_SIDE)
def test_robot_side_modules_import_no_torch(module):
    assert heavy_imports(module) == [], f"{module} loads the model stack"


def test_the_torch_check_sees_a_heavy_import():
    """The check above can fail: the policy node (which runs the model) loads torch."""
    assert "torch" in heavy_imports("specprune.model.presets")


def test_core_names_resolve_on_first_use():
    """specprune's public API is imported lazily: every name in __all__ resolves, and the
    layouts the model code reads from presets are the torch-free ones."""
    import specprune
    from specprune.model import layouts, presets

    assert sorted(specprune.__all__) == sorted(specprune._SOURCES)
    for name in specprune.__all__:
        assert getattr(specprune, name).__name__ == name
    assert presets.LAYOUTS is layouts.LAYOUTS and presets.ActionLayout is layouts.ActionLayout
    with pytest.raises(AttributeError, match="no attribute 'load'"):
        getattr(specprune, "load")
