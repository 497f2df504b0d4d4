"""Launch the simulated Panda (pick_color) bridge, the SpecPrune policy and the executor.

    ros2 launch specprune_ros sim_policy.launch.py   # the shipped pick_color checkpoint
    ros2 launch specprune_ros sim_policy.launch.py model:=tiny output:=pose
    ros2 launch specprune_ros sim_policy.launch.py record:=true bag:=bags/sim1   # + a bag

The same nodes as on a robot (policy.launch.py): the policy's chunks go to the executor,
whose twist (or pose target) commands the simulated arm as a Cartesian controller would
take them; config/executor_sim.yaml opens the speed limits to the simulator's full OSC
range. The bridge publishes /clock and every node runs on simulated time
(``use_sim_time:=false`` for wall time), so latency skipping and watchdogs follow the
simulator when a loaded machine runs it slower than real time. The launch ends when any
of the three processes exits.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "specprune_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, "config")
    sim = Node(
        package=PACKAGE, executable="specprune_sim_arm", name="specprune_sim_arm",
        output="screen", emulate_tty=True,
        parameters=[os.path.join(config, "sim_arm.yaml"),
                    {"command_input": LaunchConfiguration("output"),
                     "publish_clock": LaunchConfiguration("use_sim_time")}],
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
            "executor_overrides_file": os.path.join(config, "executor_sim.yaml"),
            "record": LaunchConfiguration("record"), "bag": LaunchConfiguration("bag"),
        }.items())
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
        sim,
        nodes,
    ])
