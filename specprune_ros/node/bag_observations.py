"""Rebuild the policy node's observations from a recording, with the node's own code.

The node's parameters come from the bag (fetched by the recorder, then every change on
/parameter_events), else the parameter table's defaults. Frames, joint states and poses go
through the same conversions (``ros_image``, ``tf_motion``) into the same
ObservationBuilder (``observation_builder.make_builder``: stamp matching, state interpolation at
the image stamp, age and jump limits, the proprio layout) in the order the recorder
received them.

Which observations: where the bag holds the node's chunks, exactly the ones it stepped on.
A chunk is stamped with view 0's stamp S; before building for it, every state message
received up to the chunk is fed, and camera frames up to stamp S (view 0) or S +
max_view_skew_s (the other views), so the builder's newest unused set is the one the node
used. Joint states and poses stamped up to S + STATE_AHEAD_S are fed too, even when the
recorder received them after the chunk: its subscriptions are not the node's, and a pose the
node had (the one clearing a reset's pose jump) can reach the recorder after the chunk.
Without chunks (a bag of a teleoperated episode), every new matched set of frames.
The node's ~/reset and activation markers (``EPISODE_TOPIC``) start an episode; with the node's
``reset_forgets_instruction`` it also forgets the topic instruction, as the node does, and
a chunk of the new episode recorded before its instruction (the recorder received it later
than the node) takes the next instruction of the bag, which the node had.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from specprune import Observation
from specprune_ros.node import parameters as params
from specprune_ros.node.bag_reader import BagError, Recorded, RecordedBag, check_topics, decode
from specprune_ros.node.bag_topics import (COMPRESSED, EPISODE_ACTIVATE, FIXED, REPLAY_ROLES,
                                           TopicSpec)
from specprune_ros.node.bag_topics import camera_spec
from specprune_ros.node.observation_builder import ObservationBuilder, limits_from, make_builder
from specprune_ros.node.ros_image import compressed_msg_to_rgb, image_msg_to_rgb
from specprune_ros.node.tf_motion import pose_from_msg, stamp_seconds

STATE_AHEAD_S = 0.1  # state stamped this far past a chunk's image is fed before it
_STATE_ROLES = ("joint_states", "ee_pose")
#: rcl_interfaces/ParameterValue type -> the field holding the value
_VALUE_FIELDS = {1: "bool_value", 2: "integer_value", 3: "double_value", 4: "string_value",
                 5: "byte_array_value", 6: "bool_array_value", 7: "integer_array_value",
                 8: "double_array_value", 9: "string_array_value"}


@dataclass
class RebuiltStep:
    """One observation the node stepped on (or could have), and what it published."""

    episode: int
    observation: Observation
    images: List[np.ndarray]
    values: Dict[str, Any]  # the node's parameters in force (prune.*, instruction, ...)
    recorded: Optional[np.ndarray] = None  # (chunk, action_dim) the node published
    recorded_names: List[str] = field(default_factory=list)
    log_ns: int = 0  # when the newest frame of the set was received (the recorder's clock)


@dataclass
class Rebuilt:
    steps: List[RebuiltStep]
    parameters_from: str  # "recording" or "defaults"
    not_rebuilt: List[str] = field(default_factory=list)  # chunks whose input was not found
    episodes: int = 1


def node_parameters(bag: RecordedBag) -> Tuple[Dict[str, Any], int, str]:
    """(the node's parameter values, the log time they hold from, where they came from)."""
    values = {s.name: s.default for s in params.PARAMS}
    fetched = bag.policy_parameters()
    if fetched is None:
        return values, 0, "defaults"
    values.update({k: v for k, v in fetched["values"].items() if k in values})
    return values, int(fetched["stamp_ns"]), "recording"


def node_topics(values: Dict[str, Any]) -> List[TopicSpec]:
    """The topics the node with ``values`` reads and writes (the roles the replay needs)."""
    specs = [camera_spec(v, t, values["camera_transport"])
             for v, t in enumerate(values["camera_topics"])]
    names = {"joint_states": values["joint_states_topic"], "ee_pose": values["ee_pose_topic"],
             "instruction": values["instruction_topic"],
             "action_chunk": values["action_chunk_topic"]}
    specs += [TopicSpec(role, names.get(role, topic), msgtype, qos)
              for role, (topic, msgtype, qos) in FIXED.items()]
    return specs


def parameter_value(value: Any) -> Any:
    """A recorded rcl_interfaces/ParameterValue as plain Python (None when unset)."""
    name = _VALUE_FIELDS.get(int(value.type))
    if name is None:
        return None
    raw = getattr(value, name)
    return raw.tolist() if isinstance(raw, np.ndarray) else (list(raw) if isinstance(
        raw, (list, tuple)) else raw)


class _Replayer:
    """Feeds the recorded messages into the node's builder (see the module docstring)."""

    def __init__(self, bag: RecordedBag, values: Dict[str, Any], since_ns: int,
                 proprio_dim: int, specs: List[TopicSpec]) -> None:
        self.values, self.since_ns, self.node = dict(values), since_ns, f"/{params.NODE_NAME}"
        fetched = bag.policy_parameters()
        if fetched:
            self.node = fetched["node"]
        self.builder: ObservationBuilder = make_builder(self.values, proprio_dim)
        self.roles = {s.topic: s.role for s in specs}
        self.views = {s.topic: int(s.role[len("camera"):]) for s in specs
                      if s.role.startswith("camera")}
        self.frames: List[Deque[Recorded]] = [deque() for _ in self.views]
        self.topic_instruction = ""
        self.episode = 0
        self.stepped_in_episode = False
        self.received_s = 0.0

    # ---------------------------------------------------------------- the node's callbacks
    def handle(self, message: Recorded) -> None:
        """A non-camera message, as the node's callback handles it."""
        role = self.roles.get(message.topic)
        if role == "joint_states":
            msg = decode(message)
            self.builder.set_joint_state(list(msg.name), [float(p) for p in msg.position],
                                         stamp_seconds(msg.header.stamp))
        elif role == "ee_pose" and self.values["ee_motion_source"] != "tf":
            msg = decode(message)
            self.builder.add_pose(*pose_from_msg(msg), frame_id=msg.header.frame_id)
        elif role == "instruction":
            self.topic_instruction = decode(message).data
        elif role == "episode":
            self._reset(forget=decode(message).data != EPISODE_ACTIVATE)
        elif role == "parameter_events" and message.log_ns > self.since_ns:
            self._parameter_event(decode(message))

    def _reset(self, forget: bool) -> None:
        """The node's ~/reset (``forget``) or activation: a new episode (once a step ran in
        this one); a reset forgets the topic instruction with reset_forgets_instruction."""
        if forget and self.values["reset_forgets_instruction"]:
            self.topic_instruction = ""
        if self.stepped_in_episode:
            self.episode += 1
            self.stepped_in_episode = False

    def forgot_instruction(self) -> bool:
        """No instruction since ~/reset forgot it (the node would not step)."""
        return not self.instruction().strip()

    def _parameter_event(self, event: Any) -> None:
        if event.node != self.node:
            return
        for p in list(event.new_parameters) + list(event.changed_parameters):
            if p.name in self.values:
                self.values[p.name] = parameter_value(p.value)
        self.builder.set_limits(limits_from(self.values))

    def add_frame(self, message: Recorded) -> None:
        view = self.views[message.topic]
        msg = decode(message)
        try:
            rgb = compressed_msg_to_rgb(msg) if message.msgtype == COMPRESSED \
                else image_msg_to_rgb(msg)
        except ValueError as exc:
            self.builder.reject_frame(view, str(exc))
            return
        self.received_s = message.log_ns * 1e-9
        self.builder.add_frame(view, rgb, stamp_seconds(msg.header.stamp), self.received_s,
                               msg.header.stamp)

    def instruction(self) -> str:
        return str(self.values["instruction"]) or self.topic_instruction

    # ---------------------------------------------------------------- building
    def feed_frames(self, up_to_ns: int, stamp: Optional[float]) -> None:
        """Frames received by ``up_to_ns`` (and, with ``stamp``, not after the set the node
        used: view 0 up to ``stamp``, the others up to stamp + max_view_skew_s)."""
        skew = float(self.values["max_view_skew_s"])
        for view, queue in enumerate(self.frames):
            limit = None if stamp is None else stamp + (skew if view else 0.0)
            while queue and queue[0].log_ns <= up_to_ns and (
                    limit is None or _frame_stamp(queue[0]) <= limit + 1e-9):
                self.add_frame(queue.popleft())

    def build(self) -> Any:
        return self.builder.build(self.received_s, self.instruction())

    def step(self, result: Any) -> RebuiltStep:
        self.stepped_in_episode = True
        return RebuiltStep(self.episode, result.observation, list(result.images),
                           dict(self.values), log_ns=int(round(self.received_s * 1e9)))


def _frame_stamp(message: Recorded) -> float:
    return stamp_seconds(decode(message).header.stamp)


def _chunk(message: Recorded) -> Tuple[float, np.ndarray, List[str]]:
    msg = decode(message)
    rows = [np.asarray(p.positions, dtype=np.float64) for p in msg.points]
    return stamp_seconds(msg.header.stamp), np.stack(rows), list(msg.joint_names)


def rebuild(bag: RecordedBag, proprio_dim: int, use_chunks: bool = True) -> Rebuilt:
    """The observations of ``bag`` (see the module docstring); BagError naming every topic
    the replay needs that is missing or of the wrong type."""
    values, since_ns, source = node_parameters(bag)
    specs = node_topics(values)
    cameras = [s.role for s in specs if s.role.startswith("camera")]
    needed = cameras + [r for r in REPLAY_ROLES if use_chunks or r != "action_chunk"]
    problems = check_topics(bag, specs, needed)
    if problems:
        raise BagError(f"bag {bag.path}: " + "; ".join(problems))
    try:
        replayer = _Replayer(bag, values, since_ns, proprio_dim, specs)
    except ValueError as exc:
        raise BagError(f"bag {bag.path}: the recorded node parameters do not fit the model: "
                       f"{exc}") from None
    out = Rebuilt([], source)
    chunk_topic = values["action_chunk_topic"]
    fed_early: set = set()  # state messages handled before their turn
    for i, message in enumerate(bag.messages):
        if message.topic in replayer.views:
            replayer.frames[replayer.views[message.topic]].append(message)
            if not use_chunks:
                _step_every_frame(replayer, message, out)
        elif message.topic == chunk_topic and use_chunks:
            _feed_state_ahead(replayer, bag.messages, i, _chunk(message)[0], fed_early)
            if replayer.forgot_instruction():
                _feed_instruction_ahead(replayer, bag.messages, i, fed_early)
            _step_at_chunk(replayer, message, out)
        elif i not in fed_early:
            replayer.handle(message)
    out.episodes = replayer.episode + 1
    return out


def _feed_state_ahead(replayer: _Replayer, messages: List[Recorded], start: int, stamp: float,
                      fed: set) -> None:
    """Handle the state messages after ``start`` stamped up to stamp + STATE_AHEAD_S."""
    for j in range(start + 1, len(messages)):
        message = messages[j]
        if replayer.roles.get(message.topic) not in _STATE_ROLES or j in fed:
            continue
        if stamp_seconds(decode(message).header.stamp) > stamp + STATE_AHEAD_S:
            break
        replayer.handle(message)
        fed.add(j)


def _feed_instruction_ahead(replayer: _Replayer, messages: List[Recorded], start: int,
                            fed: set) -> None:
    """Handle the next instruction after ``start`` (before the next ~/reset marker): the node
    stepped, so it had received it."""
    for j in range(start + 1, len(messages)):
        role = replayer.roles.get(messages[j].topic)
        if role == "episode":
            return
        if role == "instruction" and j not in fed:
            replayer.handle(messages[j])
            fed.add(j)
            return


def _step_at_chunk(replayer: _Replayer, message: Recorded, out: Rebuilt) -> None:
    stamp, actions, names = _chunk(message)
    replayer.feed_frames(message.log_ns, stamp)
    result = replayer.build()
    if result.observation is None and result.faults and all(
            f.key == "ee_jump" for f in result.faults):
        # a jump before the newest pair of poses (a reset's teleport) is reported once by
        # the next build; the node builds on every frame and had reported it already
        result = replayer.build()
    if result.observation is None or abs(result.observation.stamp - stamp) > 1e-6:
        why = "; ".join(f.message for f in result.faults) or result.waiting or (
            f"the builder's set is stamped {result.observation.stamp:.6f}")
        out.not_rebuilt.append(f"chunk stamped {stamp:.6f}: {why}")
        return
    step = replayer.step(result)
    step.recorded, step.recorded_names = actions, names
    out.steps.append(step)


def _step_every_frame(replayer: _Replayer, message: Recorded, out: Rebuilt) -> None:
    replayer.feed_frames(message.log_ns, None)
    result = replayer.build()
    if result.observation is not None:
        out.steps.append(replayer.step(result))
