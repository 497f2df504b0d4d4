"""Launch the SpecPrune policy node with config/policy.yaml.

    ros2 launch specprune_ros policy.launch.py model:=/path/to/checkpoint device:=cuda \
        agentview_topic:=/cam0/image_raw wrist_topic:=/cam1/image_raw

Topic arguments remap the node's default topics (for compressed transport the
<topic>/compressed names are remapped too); model and device override the yaml.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "specprune_ros"

#: launch argument -> (the node's default topic, description)
TOPICS = {
    "agentview_topic": ("/camera/agentview/image_raw", "third-person camera (view 0)"),
    "wrist_topic": ("/camera/wrist/image_raw", "wrist camera (view 1)"),
    "joint_states_topic": ("/joint_states", "sensor_msgs/JointState"),
    "ee_pose_topic": ("/ee_pose", "end-effector geometry_msgs/PoseStamped"),
    "instruction_topic": ("/instruction", "std_msgs/String instruction"),
    "action_chunk_topic": ("/specprune/action_chunk", "trajectory_msgs/JointTrajectory output"),
}
CAMERAS = ("agentview_topic", "wrist_topic")


def _remappings():
    rules = [(default, LaunchConfiguration(arg)) for arg, (default, _) in TOPICS.items()]
    rules += [(f"{TOPICS[arg][0]}/compressed", [LaunchConfiguration(arg), "/compressed"])
              for arg in CAMERAS]
    return rules


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory(PACKAGE), "config", "policy.yaml")
    arguments = [
        DeclareLaunchArgument("model", default_value="oft-cpu",
                              description="preset name or OpenVLA-OFT checkpoint folder"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="torch device: auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("params_file", default_value=config,
                              description="parameter file of the policy node"),
    ]
    arguments += [DeclareLaunchArgument(arg, default_value=default,
                                        description=f"topic of the {what}")
                  for arg, (default, what) in TOPICS.items()]
    policy = Node(
        package=PACKAGE,
        executable="specprune_policy",
        name="specprune_policy",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"),
                    {"model": LaunchConfiguration("model"),
                     "device": LaunchConfiguration("device")}],
        remappings=_remappings(),
    )
    return LaunchDescription(arguments + [policy])
