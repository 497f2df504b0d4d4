"""What the nodes need, beyond their own parameter files, to run on a task. No ROS, no torch.

One answer read by both places that start the nodes on a simulated task:
``specprune-eval --via ros`` (eval_ros._node_commands) and ``sim_policy.launch.py
task:=...``. Our own tasks (pick_color, lift) need nothing more; the LIBERO-shaped suites'
(``sim_spatial_0``, ...) only their suite's step limit as ``horizon``. A LIBERO task
(``<suite>:<index>``) needs one parameter file more per node, each laid over that node's
usual files, and the suite's step limit:

- the bridge: ``config/libero_arm.yaml`` (LIBERO's 256 px cameras, camera rate, world frame);
- the policy node: ``config/policy_libero.yaml`` (base_frame world, 256 x 256 images);
- the executor: ``config/executor_libero.yaml`` (base_frame world, the workspace box in
  LIBERO's world frame);
- ``horizon``: openvla-oft's policy ticks per episode of the suite (220 / 280 / 300 / 520),
  the bridge's episode length when launched (specprune-eval counts its own horizon).

Paths are relative to the package's data root (package_data.data_path, or the share
directory of an installed package).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from specprune_ros.sim.libero_arm import libero_task, suite_horizon
from specprune_ros.sim.tabletop_suites import tabletop_task

LIBERO_BRIDGE_FILE = "config/libero_arm.yaml"
LIBERO_POLICY_FILE = "config/policy_libero.yaml"
LIBERO_EXECUTOR_FILE = "config/executor_libero.yaml"


@dataclass(frozen=True)
class TaskWiring:
    """The extra parameter file of each node (None: none) and the bridge's horizon (None:
    config/sim_arm.yaml's) for ``task``."""

    task: str
    bridge_file: Optional[str] = None
    policy_file: Optional[str] = None
    executor_file: Optional[str] = None
    horizon: Optional[int] = None


def task_wiring(task: str) -> TaskWiring:
    """The wiring of ``task``; ValueError (saying what a LIBERO task is called) for a name
    with a colon that names no LIBERO task, or for a suite without a step limit."""
    tabletop = tabletop_task(task)
    if tabletop is not None:  # our simulator: the usual files, the suite's step limit
        return TaskWiring(task, horizon=tabletop.horizon)
    named = libero_task(task)
    if named is None:
        return TaskWiring(task)
    return TaskWiring(task, bridge_file=LIBERO_BRIDGE_FILE, policy_file=LIBERO_POLICY_FILE,
                      executor_file=LIBERO_EXECUTOR_FILE, horizon=suite_horizon(named[0]))
