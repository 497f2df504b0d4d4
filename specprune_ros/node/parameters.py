"""The policy node's parameters: one table, from which everything else derives.

``PARAMS`` holds the node's own parameters and, under the prefix ``prune.``, one parameter
per ``specprune.PruneConfig`` field derived from ``specprune.field_specs()`` (default, doc,
range, liveness; tuple fields become integer arrays). Its entries are ``PolicyParam``: the
generic ``param_table.ParamSpec`` plus what only this node knows (the ``prune.*`` names, the
layer lists checked against the loaded model). From the table come the
ParameterDescriptors the node declares, the conversion of parameter values to PruneConfig
changes, and config/policy.yaml::

    python -m specprune_ros.node.parameters --write config/policy.yaml   # regenerate
    python -m specprune_ros.node.parameters --check config/policy.yaml   # exit 1 if outdated
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from specprune import PruneConfig, field_specs
from specprune_ros.node.param_table import (ParamSpec, ros_value, rule_problem, yaml_cli,
                                            yaml_entries, yaml_scalar)

NODE_NAME = "specprune_policy"
PRUNE_PREFIX = "prune."
EE_MOTION_SOURCES = ("tf", "pose_topic", "policy")


@dataclass(frozen=True)
class PolicyParam(ParamSpec):
    """A parameter of the policy node: a ``ParamSpec`` that knows the ``prune.*`` names
    and the parameters that name the model (``until_configure``: read by configure,
    settable while the node is unconfigured, refused once it is configured)."""

    until_configure: bool = False

    @property
    def is_prune(self) -> bool:
        return self.name.startswith(PRUNE_PREFIX)

    @property
    def field(self) -> str:
        """The PruneConfig field of a ``prune.*`` parameter."""
        return self.name[len(PRUNE_PREFIX):]

    @property
    def is_layer_list(self) -> bool:
        """A list of decoder layer indices (checked against the loaded model's depth)."""
        return self.is_prune and self.name.endswith("_layers") and isinstance(self.default, list)

    def notes(self) -> List[str]:
        """A layer list's rule: its layers must exist in the loaded model."""
        if not self.is_layer_list:
            return []
        return [f"Every layer must exist in the loaded model (-depth..depth-1); the default "
                f"{yaml_scalar(self.default)} is written for 32 layers and uses what a "
                f"shallower model has."]

    def liveness(self) -> str:
        if self.until_configure:
            return "Settable while unconfigured (read by configure); refused once configured."
        return super().liveness()


# ------------------------------------------------------------------------------ the table
_PANDA_ARM = [f"panda_joint{i}" for i in range(1, 8)]
_PANDA_FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]

NODE_PARAMS: Tuple[PolicyParam, ...] = (
    # --- lifecycle and safety (structural) -----------------------------------------------
    PolicyParam("autostart", False, "Bring the managed node to active by itself at start "
                "(configure, then activate); a configure failure then exits with code 1. "
                "false: wait in 'unconfigured' for a lifecycle manager / launch file / "
                "`ros2 lifecycle set`.", read_only=True),
    PolicyParam("allow_preset_model", False, "Allow a preset model (random weights: random "
                "motion on a robot). Only tests and the simulator set it; otherwise configure "
                "refuses a preset name.", read_only=True),
    # --- the model (structural) ----------------------------------------------------------
    PolicyParam("model", "", "Policy to load: an OpenVLA-OFT checkpoint folder, or a preset "
                "name ('tiny', 'oft-cpu') when allow_preset_model is true. Empty (the "
                "default): the node starts, waits unconfigured and publishes nothing until a "
                "model is named and it is configured and activated; a missing folder or a "
                "refused preset fail configure.", until_configure=True),
    PolicyParam("device", "auto", "Torch device: 'auto' (cuda when available), 'cpu', "
                "'cuda' or 'cuda:N'.", until_configure=True),
    PolicyParam("dtype", "auto", "Model dtype: 'auto' is bfloat16 on a GPU, float32 on the CPU.",
                until_configure=True, choices=("auto", "float32", "bfloat16", "float16")),
    PolicyParam("action_layout", "", "Action layout of the checkpoint ('libero' or 'aloha'); "
                "empty: the checkpoint's own (presets: libero).", until_configure=True,
                choices=("", "libero", "aloha")),
    PolicyParam("torch_threads", 0, "CPU threads torch may use; 0 keeps torch's default.",
                until_configure=True, lo=0, hi=256),
    # --- inputs (structural) -------------------------------------------------------------
    PolicyParam("camera_topics", ["/camera/agentview/image_raw", "/camera/wrist/image_raw"],
                "Camera topics in the model's view order (view 0 third-person, view 1 wrist "
                "for LIBERO); their number must equal the model's views.", read_only=True),
    PolicyParam("camera_transport", "raw", "'raw': sensor_msgs/Image on each camera topic; "
                "'compressed': sensor_msgs/CompressedImage on <topic>/compressed.",
                read_only=True, choices=("raw", "compressed")),
    PolicyParam("layout", "libero", "Proprio layout. 'libero': ee position + axis-angle of the "
                "ee quaternion + the two gripper finger positions (OpenVLA-OFT LIBERO state); "
                "'joints': the positions of joint_names.", read_only=True,
                choices=("libero", "joints")),
    PolicyParam("joint_states_topic", "/joint_states", "sensor_msgs/JointState topic.",
                read_only=True),
    PolicyParam("joint_names", _PANDA_ARM, "Arm joints, in proprio order for layout 'joints'.",
                read_only=True),
    PolicyParam("gripper_joint_names", _PANDA_FINGERS, "The two gripper finger joints of "
                "layout 'libero'.", read_only=True),
    PolicyParam("ee_pose_topic", "/ee_pose", "geometry_msgs/PoseStamped of the end effector in "
                "base_frame: the pose for proprio unless ee_motion_source is 'tf', and the "
                "motion when it is 'pose_topic'.", read_only=True),
    PolicyParam("base_frame", "panda_link0", "TF parent frame of the end-effector lookup "
                "(use the frame the checkpoint's state was recorded in).", read_only=True),
    PolicyParam("ee_frame", "panda_hand", "TF child frame: the end effector.", read_only=True),
    PolicyParam("tf_rate_hz", 50.0, "Rate of the TF lookups base_frame -> ee_frame.",
                read_only=True, lo=1.0, hi=1000.0),
    PolicyParam("instruction_topic", "/instruction", "std_msgs/String topic of the language "
                "instruction (transient local, like a latched topic).", read_only=True),
    # --- outputs (structural) ------------------------------------------------------------
    PolicyParam("action_chunk_topic", "/specprune/action_chunk", "trajectory_msgs/"
                "JointTrajectory output: joint_names = action dimensions, points[i].positions = "
                "action of control tick i.", read_only=True),
    PolicyParam("overlay_topic", "~/kept_patches", "sensor_msgs/Image (rgb8) output: the views "
                "side by side, dropped patches darkened.", read_only=True),
    # --- live behaviour ------------------------------------------------------------------
    PolicyParam("instruction", "", "Language instruction; non-empty overrides "
                "instruction_topic."),
    PolicyParam("reset_forgets_instruction", False, "~/reset forgets the instruction received "
                "on instruction_topic: no step until the new episode's instruction arrives "
                "(no chunk, WARN 'no instruction yet'). Set it where the episode source "
                "publishes an instruction per episode after the reset (the simulator bridge: "
                "its new frames can reach the node before its new instruction); leave it "
                "false where the instruction is published once (latched) and ~/reset "
                "separates episodes of the same task, which would otherwise wait for ever."),
    PolicyParam("ee_motion_source", "pose_topic", "Measured end-effector motion for the "
                "pruning controller: 'tf' (needs tf2_ros), 'pose_topic' (ee_pose_topic), "
                "'policy' (the policy's own actions, no measurement).",
                choices=EE_MOTION_SOURCES),
    PolicyParam("control_rate_hz", 20.0, "Control ticks per second: point i of a chunk has "
                "time_from_start (i + 1) / control_rate_hz.", lo=0.1, hi=1000.0),
    PolicyParam("inference_rate_hz", 10.0, "Most policy steps per second; 0: as fast as the "
                "model runs.", lo=0.0, hi=1000.0),
    PolicyParam("max_image_age_s", 0.5, "A camera whose newest image is older than this "
                "(header stamp vs the node clock) is stale: no chunk.", lo=0.001, hi=60.0),
    PolicyParam("max_view_skew_s", 0.1, "Views whose stamps differ by more than this are out "
                "of sync: no chunk.", lo=0.0, hi=10.0),
    PolicyParam("max_joint_state_age_s", 0.5, "Joint state older than this is stale: no chunk.",
                lo=0.001, hi=60.0),
    PolicyParam("max_pose_age_s", 0.5, "End-effector pose older than this is stale: no chunk.",
                lo=0.001, hi=60.0),
    PolicyParam("max_ee_speed", 3.0, "Two poses implying a faster translation (m/s) are a "
                "TF/pose jump: reported, no motion from them.", lo=0.01, hi=100.0),
    PolicyParam("max_ee_angular_speed", 20.0, "Likewise for rotation (rad/s).",
                lo=0.01, hi=1000.0),
    PolicyParam("image_width", 224, "Required camera image width in pixels; 0 accepts any "
                "(the model resizes).", lo=0, hi=16384),
    PolicyParam("image_height", 224, "Required camera image height in pixels; 0 accepts any.",
                lo=0, hi=16384),
    PolicyParam("publish_overlay", True, "Publish the kept-patch overlay image (only computed "
                "while someone subscribes)."),
)


def _prune_param(name: str, spec: Mapping[str, Any]) -> PolicyParam:
    default = spec["default"]
    if isinstance(default, tuple):
        default = list(default)
    return PolicyParam(PRUNE_PREFIX + name, default, spec["doc"], read_only=not spec["live"],
                       lo=spec["min"], hi=spec["max"])


PRUNE_PARAMS: Tuple[PolicyParam, ...] = tuple(
    _prune_param(name, spec) for name, spec in field_specs().items())
PARAMS: Tuple[PolicyParam, ...] = NODE_PARAMS + PRUNE_PARAMS
BY_NAME: Dict[str, PolicyParam] = {spec.name: spec for spec in PARAMS}


# ------------------------------------------------------------------------------ conversion
def prune_changes(values: Mapping[str, Any]) -> Dict[str, Any]:
    """{``prune.<field>``: value} (other names ignored) -> PruneConfig field changes."""
    changes = {}
    for name, value in values.items():
        if name.startswith(PRUNE_PREFIX):
            value = ros_value(value)
            changes[name[len(PRUNE_PREFIX):]] = tuple(value) if isinstance(value, list) \
                else value
    return changes


def prune_config(values: Mapping[str, Any], base: Optional[PruneConfig] = None) -> PruneConfig:
    """``base`` (default PruneConfig()) with the ``prune.*`` values applied and validated;
    ValueError naming the field otherwise."""
    return (base or PruneConfig()).updated(**prune_changes(values))


def check_layers(values: Mapping[str, Any], num_layers: int,
                 current: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """Why a layer-list value in ``values`` names a layer the ``num_layers``-layer model
    lacks, or None. A list equal to its default is exempt: the core's defaults are the
    paper's 32-layer indices and shallower models use the layers they have. With
    ``prune.layer_depth`` set (in ``values``, else in the ``current`` ones), the lists are
    written for a model of that depth."""
    depth = values.get("prune.layer_depth", (current or {}).get("prune.layer_depth", 0))
    depth = int(ros_value(depth) or 0)
    for name, value in values.items():
        spec = BY_NAME.get(name)
        if spec is None or not spec.is_layer_list:
            continue
        value = ros_value(value)
        if value == spec.default:
            continue
        written_for = depth or num_layers
        missing = [i for i in value if not -written_for <= int(i) < written_for]
        if missing:
            model = ("the loaded model, which has" if not depth else
                     "a model of prune.layer_depth")
            return (f"{name}: layers {missing} do not exist in {model} {written_for} decoder "
                    f"layers (valid indices {-written_for}..{written_for - 1})")
    return None


def check_values(values: Mapping[str, Any], configured: bool = False,
                 node: str = f"/{NODE_NAME}") -> Optional[str]:
    """The first table rule (choices; ``until_configure`` parameters only while not
    ``configured``) that ``values`` break, or None; ``node`` is the node's name in the
    reason. Ranges and types are the descriptors' job; PruneConfig consistency is
    ``prune_config``'s."""
    frozen = [name for name in values if configured and name in BY_NAME
              and BY_NAME[name].until_configure]
    if frozen:
        return (f"{frozen[0]} is read by configure and a model is loaded: `ros2 lifecycle "
                f"set {node} deactivate` (if active) and `... cleanup` first, then set it "
                f"and configure again")
    return rule_problem(BY_NAME, values)


# ------------------------------------------------------------------------------ yaml
_HEADER = f"""\
# Parameters of the SpecPrune policy node ({NODE_NAME}), generated from
# specprune_ros/node/parameters.py (the prune.* ones from specprune.PruneConfig): do not edit by
# hand, regenerate with
#   python -m specprune_ros.node.parameters --write config/policy.yaml
# Run: python -m specprune_ros.node.policy_node --ros-args --params-file config/policy.yaml
# Live parameters can be changed with `ros2 param set /{NODE_NAME} <name> <value>`;
# invalid values are rejected with the reason."""


def render_yaml(specs: Sequence[PolicyParam] = PARAMS) -> str:
    """The documented parameter file: every parameter with its comment and default."""
    lines = _HEADER.splitlines() + [f"{NODE_NAME}:", "  ros__parameters:"]
    lines += yaml_entries([s for s in specs if not s.is_prune], "    ", lambda s: s.name)
    lines += ["    # SpecPrune settings (specprune.PruneConfig; see its docstrings).",
              "    prune:"]
    lines += yaml_entries([s for s in specs if s.is_prune], "      ", lambda s: s.field)
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return yaml_cli(argv, render_yaml(), "specprune_ros.node.parameters", "the policy node's")


if __name__ == "__main__":
    sys.exit(main())
