"""Launch the simulated Panda (pick_color task) bridge and the SpecPrune policy node.

    ros2 launch specprune_ros sim_policy.launch.py   # the shipped pick_color checkpoint
    ros2 launch specprune_ros sim_policy.launch.py model:=tiny

The bridge publishes the topics policy.launch.py expects by default and executes the
chunks the policy publishes.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "specprune_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    sim = Node(
        package=PACKAGE,
        executable="specprune_sim_arm",
        name="specprune_sim_arm",
        output="screen",
        emulate_tty=True,
        parameters=[os.path.join(share, "config", "sim_arm.yaml")],
    )
    policy = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "policy.launch.py")),
        launch_arguments={"model": LaunchConfiguration("model"),
                          "device": LaunchConfiguration("device")}.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("model",
                              default_value=os.path.join(share, "checkpoints", "pick_color"),
                              description="preset name or OpenVLA-OFT checkpoint folder"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="torch device: auto, cpu, cuda or cuda:N"),
        sim,
        policy,
    ])
