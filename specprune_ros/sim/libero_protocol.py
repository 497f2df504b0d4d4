"""The episode protocol of openvla-oft's LIBERO evaluation, on our LIBERO worker. No ROS.

Read from moojink/openvla-oft (experiments/robot/libero/run_libero_eval.py and
libero_utils.py, commit 213c5ff) and checked against numbers its own functions produce
(test/fixtures/libero/README.md):

- one environment per task, built with 256 x 256 cameras and seeded with 0 right after
  construction; the task's 50 fixed initial states run in order, each after ``env.reset()``;
- the first 10 ticks execute the no-op action ``[0, 0, 0, 0, 0, 0, -1]`` (objects settle);
- then at most ``SUITE_MAX_STEPS[suite]`` policy ticks (220 / 280 / 300 / 520 for spatial /
  object / goal / 10), the policy queried whenever its queue of actions is empty and the
  queue refilled with its chunk (a deque of ``OPEN_LOOP_STEPS`` = 8: a longer chunk keeps
  its last 8);
- the policy sees both views rotated 180 degrees (``frame[::-1, ::-1]``), the 8-D state
  ``eef pos + quat2axisangle(eef quat) + gripper qpos`` and the task's ``language`` (not the
  BDDL file's instruction, which differs); the 256 -> 224 resize and centre crop are the
  model's preprocessing (specprune/model/image_ops.py);
- success is LIBERO's ``done`` (the BDDL goal) on a policy tick; an exception ends the episode
  as a failure.

The policy returns actions in the environment's convention (gripper -1 open, +1 close);
``gripper_to_env`` is openvla-oft's conversion for a checkpoint trained on its RLDS data
(gripper in [0, 1], 1 = open). Only the frames the policy uses are rendered.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from specprune.config import check_value

from specprune_ros.sim.libero_env import LiberoStep, LiberoWorker, LiberoWorkerDied
from specprune_ros.sim.libero_worker import VIEWS
from specprune_ros.sim.sim_arm import quat_to_axis_angle

#: Policy ticks per episode by suite (openvla-oft's TASK_MAX_STEPS: its longest training
#: demonstration of the suite plus a margin).
SUITE_MAX_STEPS: Dict[str, int] = {"libero_spatial": 220, "libero_object": 280,
                                   "libero_goal": 300, "libero_10": 520, "libero_90": 400}
NUM_STEPS_WAIT = 10
DUMMY_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ENV_IMAGE_SIZE = 256
OPEN_LOOP_STEPS = 8
ENV_SEED = 0
INIT_STATES_PER_TASK = 50


def flip_180(frame: np.ndarray) -> np.ndarray:
    """A LIBERO frame as the policy sees it: rotated 180 degrees (openvla-oft's
    get_libero_image), as a contiguous copy."""
    return np.ascontiguousarray(np.asarray(frame)[::-1, ::-1])


def proprio(step: LiberoStep) -> np.ndarray:
    """The 8-D state: end-effector position, axis-angle of its (x, y, z, w) quaternion,
    the two finger joints (world frame, as LIBERO's datasets)."""
    return np.concatenate([step.eef_pos, quat_to_axis_angle(step.eef_quat),
                           step.gripper_qpos]).astype(np.float64)


#: How a policy's gripper value reads: "env" -1 open .. 1 close, as the arm takes it;
#: "openvla_oft" 0 close .. 1 open, what OpenVLA-OFT's released LIBERO checkpoints predict
#: (their RLDS training data), converted by gripper_to_env.
GRIPPER_CONVENTIONS = ("env", "openvla_oft")


def gripper_to_env(actions: np.ndarray) -> np.ndarray:
    """openvla-oft's process_action for model family openvla: gripper [0, 1] (1 = open) ->
    binarised -1 open / +1 close; the other dimensions unchanged. Works on (7,) or (N, 7)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    out[..., -1] = -np.sign(2.0 * out[..., -1] - 1.0)
    return out


@dataclass(frozen=True)
class ProtocolObservation:
    """What the policy gets at a query: both views rotated 180 degrees (256 x 256), the 8-D
    state and the task's language."""

    full_image: np.ndarray
    wrist_image: np.ndarray
    state: np.ndarray
    instruction: str


Policy = Callable[[ProtocolObservation], np.ndarray]


@dataclass(frozen=True)
class ProtocolConfig:
    """The protocol's numbers for one suite (defaults: openvla-oft's)."""

    suite: str = "libero_spatial"
    max_steps: Optional[int] = None  # None: SUITE_MAX_STEPS[suite]
    num_steps_wait: int = NUM_STEPS_WAIT
    open_loop_steps: int = OPEN_LOOP_STEPS

    def __post_init__(self) -> None:
        if self.max_steps is None and self.suite not in SUITE_MAX_STEPS:
            raise ValueError(f"ProtocolConfig.suite={self.suite!r}: no step limit known; "
                             f"give max_steps or use one of {sorted(SUITE_MAX_STEPS)}")
        if self.max_steps is not None:
            check_value("ProtocolConfig", "max_steps", self.max_steps, int, 1, None)
        check_value("ProtocolConfig", "num_steps_wait", self.num_steps_wait, int, 0, None)
        check_value("ProtocolConfig", "open_loop_steps", self.open_loop_steps, int, 1, None)

    @property
    def policy_steps(self) -> int:
        """Policy ticks allowed per episode."""
        return SUITE_MAX_STEPS[self.suite] if self.max_steps is None else self.max_steps


@dataclass
class ProtocolEpisode:
    """One episode's outcome: success, policy ticks executed, policy queries, the error
    that ended it (if any), and the 8-D state at each query."""

    init_state: int
    success: bool = False
    steps: int = 0
    queries: int = 0
    error: Optional[str] = None
    query_states: List[np.ndarray] = field(default_factory=list)


def _observe(worker: LiberoWorker, step: LiberoStep, instruction: str) -> ProtocolObservation:
    images = step.images if all(v in step.images for v in VIEWS) else worker.render(VIEWS)
    return ProtocolObservation(full_image=flip_180(images[VIEWS[0]]),
                               wrist_image=flip_180(images[VIEWS[1]]),
                               state=proprio(step), instruction=instruction)


def run_episode(worker: LiberoWorker, policy: Policy, config: ProtocolConfig,
                instruction: str, init_state: int) -> ProtocolEpisode:
    """One episode from the benchmark's initial state ``init_state`` on the worker's task
    (built by ``make``), exactly as openvla-oft's run_episode steps it."""
    result = ProtocolEpisode(init_state=init_state)
    wait, limit = config.num_steps_wait, config.policy_steps + config.num_steps_wait
    queue: collections.deque = collections.deque(maxlen=config.open_loop_steps)
    step = worker.set_init_state(init_state)
    t = 0
    try:
        while t < limit:
            if t < wait:
                step = worker.step(DUMMY_ACTION, views=VIEWS if t == wait - 1 else ())
                t += 1
                continue
            if not queue:
                inputs = _observe(worker, step, instruction)
                result.query_states.append(inputs.state)
                chunk = np.asarray(policy(inputs), dtype=np.float64).reshape(-1, 7)
                result.queries += 1
                queue.extend(chunk)
            action = queue.popleft()
            render = not queue and t + 1 < limit  # the next tick queries the policy
            step = worker.step(action, views=VIEWS if render else ())
            result.steps += 1
            if step.done:
                result.success = True
                break
            t += 1
    except (LiberoWorkerDied, TimeoutError):
        raise  # the evaluation's failure, not the episode's
    except Exception as exc:  # noqa: BLE001 - as openvla-oft: the episode fails
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def run_task(worker: LiberoWorker, policy: Policy, config: ProtocolConfig, task: int,
             init_states: Iterable[int] = range(INIT_STATES_PER_TASK),
             on_episode: Callable[[ProtocolEpisode], None] = lambda e: None
             ) -> List[ProtocolEpisode]:
    """The claim run of one task: a fresh environment seeded 0, then ``init_states`` in
    order (openvla-oft's run_task; the order matters: every hard reset draws from the
    environment's generator)."""
    info = worker.make(config.suite, task, camera_size=ENV_IMAGE_SIZE, seed=ENV_SEED,
                       hard_reset=True)
    episodes = []
    for index in init_states:
        episode = run_episode(worker, policy, config, info["language"], int(index))
        on_episode(episode)
        episodes.append(episode)
    return episodes
