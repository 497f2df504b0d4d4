"""The policy node's step on a model that fails, without a ROS graph (no rclpy.init()).

A PolicyNode instance built with ``__new__`` runs its real ``_step`` and ``_track`` on a
stand-in policy whose ``step`` raises: only NonFiniteActionError and ValueError became a
fault; anything else (a CUDA out-of-memory error, a torch RuntimeError) left the step
without a fault, /diagnostics OK with the last step's figures, and a log line every 5 s.
"""
import numpy as np
import pytest

from specprune import NonFiniteActionError, Observation
from specprune_ros.node.input_faults import FaultTracker
from specprune_ros.node.observation_builder import BuildResult
from specprune_ros.node.policy_node import PolicyNode, _Shared


class _Log:
    def __init__(self) -> None:
        self.lines = []

    def __getattr__(self, level):
        return lambda message, **kwargs: self.lines.append((level, message))


class _Failing:
    """A policy whose step raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def step(self, obs):
        raise self.error


def _node(error: Exception):
    node = PolicyNode.__new__(PolicyNode)
    node._shared, node._faults, node._policy = _Shared(), FaultTracker(), _Failing(error)
    log = _Log()
    node.get_logger = lambda: log
    return node, log


@pytest.mark.parametrize("error, key, severe", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "model_error", True),
    (NonFiniteActionError("non-finite model output"), "model_nonfinite", True),
    (ValueError("expected 2 views, got 1"), "policy_rejected", False),
])
def test_a_failing_model_step_publishes_nothing_and_is_a_fault(error, key, severe):
    node, log = _node(error)
    obs = Observation(images=[np.zeros((224, 224, 3), np.uint8)] * 2, instruction="go",
                      proprio=np.zeros(8), ee_motion=None, stamp=1.0)
    for _ in range(3):  # the node has no publisher here: publishing would raise
        node._step(BuildResult(observation=obs, received=1.0), 1.0)
        faults = node._track([])
    assert [f.key for f in faults] == [key] and faults[0].severe is severe
    assert str(error) in faults[0].message
    assert node._shared.counters.skips == 3 and node._shared.counters.steps == 0
    logged = [line for line in log.lines if key.split("_")[0] in line[1] or
              str(error) in line[1]]
    assert len(logged) == 1, log.lines  # once, while it lasts
    assert logged[0][0] == ("error" if severe else "warning")
