"""Launch the simulated Panda bridge, the SpecPrune policy and the executor.

    ros2 launch specprune_ros sim_policy.launch.py   # the shipped pick_color checkpoint
    ros2 launch specprune_ros sim_policy.launch.py model:=tiny output:=pose
    ros2 launch specprune_ros sim_policy.launch.py record:=true bag:=bags/sim1   # + a bag
    ros2 launch specprune_ros sim_policy.launch.py task:=libero_object:3 \
        model:=/path/to/libero_checkpoint gripper_convention:=openvla_oft  # LIBERO

The same nodes as on a robot (policy.launch.py): the policy's chunks go to the executor,
whose twist (or pose target) commands the simulated arm as a Cartesian controller would
take them; config/executor_sim.yaml opens the speed limits to the simulator's full OSC
range. The bridge publishes /clock and every node runs on simulated time
(``use_sim_time:=false`` for wall time), so latency skipping and watchdogs follow the
simulator when a loaded machine runs it slower than real time. The launch ends when any
of the three processes exits.

``task`` is the bridge's task: ours (pick_color, lift) or a LIBERO task
``<suite>:<index>`` (needs .venv-libero). What a task needs beyond the usual parameter
files comes from specprune_ros/sim/task_wiring.py, as for ``specprune-eval --via ros``: on
LIBERO config/libero_arm.yaml for the bridge (and the suite's step limit as its horizon),
config/policy_libero.yaml for the policy (world frame, 256 x 256 frames) and
config/executor_libero.yaml for the executor (world frame and workspace).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction,
                            Shutdown)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from specprune_ros.sim.task_wiring import task_wiring

PACKAGE = "specprune_ros"


def _task_nodes(context, share: str):
    """The bridge and the included policy + executor, wired for the task named."""
    wiring = task_wiring(LaunchConfiguration("task").perform(context))

    def path(relative: str) -> str:
        return os.path.join(share, relative)

    bridge_overrides = {"task": wiring.task,
                        "command_input": LaunchConfiguration("output"),
                        "publish_clock": LaunchConfiguration("use_sim_time"),
                        "gripper_convention": LaunchConfiguration("gripper_convention")}
    if wiring.horizon is not None:
        bridge_overrides["horizon"] = wiring.horizon
    sim = Node(
        package=PACKAGE, executable="specprune_sim_arm", name="specprune_sim_arm",
        output="screen", emulate_tty=True,
        parameters=[path("config/sim_arm.yaml"),
                    *([path(wiring.bridge_file)] if wiring.bridge_file else []),
                    bridge_overrides],
        sigterm_timeout="10", sigkill_timeout="5",
        on_exit=[Shutdown(reason="specprune_sim_arm exited")])
    nodes = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "policy.launch.py")),
        launch_arguments={
            "model": LaunchConfiguration("model"), "device": LaunchConfiguration("device"),
            "allow_preset_model": "true", "autostart": LaunchConfiguration("autostart"),
            # the bridge publishes a new instruction at each reset, maybe after its frames
            "reset_forgets_instruction": "true",
            "output": LaunchConfiguration("output"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            # a task's overrides, else the file they would overlay again (no change)
            "policy_task_file": path(wiring.policy_file or "config/policy.yaml"),
            "executor_overrides_file": path("config/executor_sim.yaml"),
            "executor_task_file": path(wiring.executor_file or "config/executor_sim.yaml"),
            "record": LaunchConfiguration("record"), "bag": LaunchConfiguration("bag"),
        }.items())
    return [sim, nodes]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("model",
                              default_value=os.path.join(share, "checkpoints", "pick_color"),
                              description="checkpoint folder or preset name"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="torch device: auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="bring the policy and executor to active"),
        DeclareLaunchArgument("output", default_value="twist", choices=["twist", "pose"],
                              description="executor output the simulated arm executes"),
        DeclareLaunchArgument("record", default_value="false", choices=["true", "false"],
                              description="also record a bag (specprune-record, on /clock)"),
        DeclareLaunchArgument("bag", default_value="",
                              description="bag directory of the recording (must not exist)"),
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              choices=["true", "false"],
                              description="bridge publishes /clock; nodes use it"),
        DeclareLaunchArgument("task", default_value="pick_color",
                              description="the bridge's task: pick_color, lift or a LIBERO "
                                          "task <suite>:<index> (e.g. libero_object:3)"),
        DeclareLaunchArgument("gripper_convention", default_value="env",
                              choices=["env", "openvla_oft"],
                              description="gripper commands as our checkpoints (env) or the "
                                          "released OpenVLA-OFT LIBERO ones predict them"),
        OpaqueFunction(function=_task_nodes, args=[share]),
    ])
