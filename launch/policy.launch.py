"""Launch the SpecPrune policy node and the chunk executor (the robot path).

    ros2 launch specprune_ros policy.launch.py model:=/path/to/checkpoint device:=cuda \
        output:=twist twist_topic:=/servo_node/delta_twist_cmds \
        agentview_topic:=/cam0/image_raw wrist_topic:=/cam1/image_raw

Both are managed (lifecycle) nodes. By default they configure and activate themselves
(``autostart:=true``); ``autostart:=false`` leaves them unconfigured for a lifecycle manager
or ``ros2 lifecycle set``. Nothing moves until a real model is named and the policy is
active; the executor commands only while active, inside its safety envelope
(config/executor.yaml), and holds while no chunk comes. Without ``model`` (the bare
command) both nodes come up, the policy node stays unconfigured, publishes no chunk, answers
``ros2 param list / get / set`` (the ``prune.*`` thresholds are live) and logs once what to
do next::

    ros2 launch specprune_ros policy.launch.py
    ros2 param set /specprune_policy prune.keep_scale 1.5
    ros2 param set /specprune_policy model /path/to/checkpoint
    ros2 lifecycle set /specprune_policy configure     # loads the model
    ros2 lifecycle set /specprune_policy activate      # steps and publishes chunks

A random-weight preset name is refused unless ``allow_preset_model:=true`` (tests, the
simulator). If either node exits, the launch shuts down (the executor's last command is a
hold).

``record:=true`` also starts specprune-record (``specprune_recorder``) with the same topic
remappings: a rosbag2 bag (MCAP) of what the policy saw and did, in ``bag`` (default
bags/specprune_<UTC time>), closed when the launch ends; ``specprune-replay <bag>`` replays it.

Topic arguments remap the nodes' default topics (for compressed transport the
<topic>/compressed names are remapped too).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "specprune_ros"

#: launch argument -> (the nodes' default topic, description)
TOPICS = {
    "agentview_topic": ("/camera/agentview/image_raw", "third-person camera (view 0)"),
    "wrist_topic": ("/camera/wrist/image_raw", "wrist camera (view 1)"),
    "joint_states_topic": ("/joint_states", "sensor_msgs/JointState"),
    "ee_pose_topic": ("/ee_pose", "end-effector geometry_msgs/PoseStamped (measured)"),
    "instruction_topic": ("/instruction", "std_msgs/String instruction"),
    "action_chunk_topic": ("/specprune/action_chunk", "policy -> executor JointTrajectory"),
    "twist_topic": ("/specprune/ee_twist", "executor TwistStamped output"),
    "pose_topic": ("/specprune/ee_target_pose", "executor PoseStamped target output"),
    "joint_trajectory_topic": ("/specprune/joint_trajectory",
                               "executor JointTrajectory output"),
    "gripper_topic": ("/specprune/gripper", "executor std_msgs/Float64 gripper output"),
    "estop_topic": ("/specprune/estop", "std_msgs/Bool e-stop input of the executor"),
}
CAMERAS = ("agentview_topic", "wrist_topic")
#: seconds from SIGINT to SIGTERM and from SIGTERM to SIGKILL at launch shutdown; the
#: policy node's ordered shutdown takes ~50 ms, but unloading torch can take seconds
SIGTERM_TIMEOUT = {"specprune_policy": "15", "specprune_executor": "5",
                   "specprune_recorder": "10"}
SIGKILL_TIMEOUT = "5"


def _remappings():
    rules = [(default, LaunchConfiguration(arg)) for arg, (default, _) in TOPICS.items()]
    rules += [(f"{TOPICS[arg][0]}/compressed", [LaunchConfiguration(arg), "/compressed"])
              for arg in CAMERAS]
    return rules


def _arguments(share: str):
    config = os.path.join(share, "config")
    executor_yaml = os.path.join(config, "executor.yaml")
    arguments = [
        DeclareLaunchArgument("model", default_value="",
                              description="OpenVLA-OFT checkpoint folder (a preset name only "
                                          "with allow_preset_model:=true); empty: the policy "
                                          "node waits unconfigured until its model parameter "
                                          "is set and it is configured and activated"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="torch device: auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("allow_preset_model", default_value="false",
                              choices=["true", "false"],
                              description="accept a random-weight preset (tests, simulator)"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="bring both nodes to active; false: leave them "
                                          "unconfigured"),
        DeclareLaunchArgument("output", default_value="twist",
                              choices=["twist", "pose", "joint_trajectory"],
                              description="the executor's command interface"),
        DeclareLaunchArgument("dry_run", default_value="false", choices=["true", "false"],
                              description="the executor computes and reports, commands "
                                          "nothing"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              choices=["true", "false"],
                              description="run both nodes on /clock (a simulator)"),
        DeclareLaunchArgument("reset_forgets_instruction", default_value="false",
                              choices=["true", "false"],
                              description="the policy's ~/reset forgets the topic "
                                          "instruction and waits for the next (an episode "
                                          "source publishing one per episode)"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(config, "policy.yaml"),
                              description="parameter file of the policy node"),
        DeclareLaunchArgument("executor_params_file", default_value=executor_yaml,
                              description="parameter file of the executor"),
        # the overlays default to the file they overlay (loaded twice, changing nothing), so
        # a robot's own params_file is not overwritten by the shipped values
        DeclareLaunchArgument("policy_task_file",
                              default_value=LaunchConfiguration("params_file"),
                              description="a second policy parameter file loaded after "
                                          "params_file: a task's overrides (e.g. "
                                          "config/policy_libero.yaml)"),
        DeclareLaunchArgument("executor_overrides_file",
                              default_value=LaunchConfiguration("executor_params_file"),
                              description="a second executor parameter file loaded after "
                                          "the first (e.g. config/executor_sim.yaml)"),
        DeclareLaunchArgument("executor_task_file",
                              default_value=LaunchConfiguration("executor_overrides_file"),
                              description="a third executor parameter file loaded after "
                                          "the second: a task's overrides (e.g. "
                                          "config/executor_libero.yaml)"),
    ]
    arguments += [
        DeclareLaunchArgument("record", default_value="false", choices=["true", "false"],
                              description="also record the policy's inputs and outputs "
                                          "(specprune-record)"),
        DeclareLaunchArgument("bag", default_value="",
                              description="bag directory of the recording (must not exist); "
                                          "empty: bags/specprune_<UTC time>"),
        DeclareLaunchArgument("record_camera_transport", default_value="raw",
                              choices=["raw", "compressed"],
                              description="camera topics recorded: raw or <topic>/compressed, "
                                          "as the policy node's camera_transport"),
    ]
    arguments += [DeclareLaunchArgument(arg, default_value=default,
                                        description=f"topic of the {what}")
                  for arg, (default, what) in TOPICS.items()]
    return arguments


def _node(name: str, parameters):
    return LifecycleNode(
        package=PACKAGE, executable=name, name=name, namespace="", output="screen",
        emulate_tty=True, parameters=parameters, remappings=_remappings(),
        sigterm_timeout=SIGTERM_TIMEOUT[name], sigkill_timeout=SIGKILL_TIMEOUT,
        on_exit=[Shutdown(reason=f"{name} exited")])


def _recorder(common):
    """specprune-record on the policy's topics (same remappings), with record:=true."""
    return Node(
        package=PACKAGE, executable="specprune_recorder", name="specprune_recorder",
        output="screen", emulate_tty=True, remappings=_remappings(),
        parameters=[dict(common, output=ParameterValue(LaunchConfiguration("bag"),
                                                       value_type=str),
                         camera_transport=LaunchConfiguration("record_camera_transport"))],
        condition=IfCondition(LaunchConfiguration("record")),
        sigterm_timeout=SIGTERM_TIMEOUT["specprune_recorder"], sigkill_timeout=SIGKILL_TIMEOUT,
        on_exit=[Shutdown(reason="specprune_recorder exited")])


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    common = {"autostart": LaunchConfiguration("autostart"),
              "use_sim_time": LaunchConfiguration("use_sim_time")}
    policy = _node("specprune_policy", [
        LaunchConfiguration("params_file"), LaunchConfiguration("policy_task_file"),
        # a string even when empty or numeric-looking (yaml would make it None or a number)
        dict(common, model=ParameterValue(LaunchConfiguration("model"), value_type=str),
             device=LaunchConfiguration("device"),
             allow_preset_model=LaunchConfiguration("allow_preset_model"),
             reset_forgets_instruction=LaunchConfiguration("reset_forgets_instruction"))])
    executor = _node("specprune_executor", [
        LaunchConfiguration("executor_params_file"),
        LaunchConfiguration("executor_overrides_file"),
        LaunchConfiguration("executor_task_file"),
        dict(common, output=LaunchConfiguration("output"),
             dry_run=LaunchConfiguration("dry_run"))])
    recorder = _recorder({"use_sim_time": LaunchConfiguration("use_sim_time")})
    return LaunchDescription(_arguments(share) + [policy, executor, recorder])
