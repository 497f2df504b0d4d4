"""launch_testing version of the end-to-end test: sim_policy.launch.py as a user runs it
(bridge + policy node + executor, /clock and use_sim_time), with the tiny preset.

Needs a full ROS 2 installation with this package built (colcon build; launch, launch_ros
and launch_testing are not on PyPI). Elsewhere it is skipped with the reason; the same
checks run across real processes in test_policy_node.py and test_executor_node.py, and
test_launch_files.py reads the launch files without launch.
"""
import math
import unittest
import warnings

import pytest

launch_testing = pytest.importorskip(
    "launch_testing",
    reason="launch_testing needs a full ROS 2 installation (not installable from PyPI); "
           "the same end-to-end checks run in test_policy_node.py and test_executor_node.py")

import launch_testing.asserts  # noqa: E402
import launch_testing.markers  # noqa: E402
from launch_probe import LaunchProbe, sim_policy_description  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
    from geometry_msgs.msg import TwistStamped  # noqa: E402
    from lifecycle_msgs.srv import GetState  # noqa: E402
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
    from rcl_interfaces.srv import SetParameters  # noqa: E402
    from trajectory_msgs.msg import JointTrajectory  # noqa: E402

ACTION_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
TIMEOUT_S = 120.0


@pytest.mark.launch_test
@launch_testing.markers.keep_alive
def generate_test_description():
    return sim_policy_description({"model": "tiny"})


class TestPolicyEndToEnd(LaunchProbe, unittest.TestCase):
    timeout_s = TIMEOUT_S

    def setUp(self) -> None:
        super().setUp()
        self.chunks = []
        self.diags = []
        self.twists = []
        self.node.create_subscription(TwistStamped, "/specprune/ee_twist", self.twists.append,
                                      10)
        self.node.create_subscription(JointTrajectory, "/specprune/action_chunk",
                                      self.chunks.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("specprune_policy"):
                self.diags.append({kv.key: kv.value for kv in status.values})

    def test_chunks_arrive_with_names_and_shape(self, proc_output) -> None:
        self.assertTrue(self._spin_until(lambda: len(self.chunks) >= 3), "no action chunks")
        msg = self.chunks[-1]
        self.assertEqual(list(msg.joint_names), ACTION_NAMES)
        self.assertEqual(len(msg.points), 8)
        for point in msg.points:
            self.assertEqual(len(point.positions), 7)
            self.assertTrue(all(math.isfinite(v) for v in point.positions))

    def test_both_nodes_are_active_and_the_executor_commands_the_arm(
            self, proc_output) -> None:
        for name in ("specprune_policy", "specprune_executor"):
            client = self.node.create_client(GetState, f"/{name}/get_state")
            self.assertTrue(client.wait_for_service(timeout_sec=60.0), name)
            future = client.call_async(GetState.Request())
            self.assertTrue(self._spin_until(future.done, 30.0))
            self.assertEqual(future.result().current_state.label, "active", name)
        self.assertTrue(self._spin_until(
            lambda: any(abs(t.twist.linear.x) + abs(t.twist.linear.z) > 0
                        for t in self.twists)), "the executor never commanded motion")

    def test_keep_scale_is_settable_and_changes_kept_tokens(self, proc_output) -> None:
        self.assertTrue(self._spin_until(
            lambda: any("kept_visual_tokens" in d for d in self.diags)))
        before = max(int(d["kept_visual_tokens"]) for d in self.diags
                     if "kept_visual_tokens" in d)
        client = self.node.create_client(SetParameters, "/specprune_policy/set_parameters")
        self.assertTrue(client.wait_for_service(timeout_sec=30.0))
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=3.0)
        future = client.call_async(SetParameters.Request(
            parameters=[Parameter(name="prune.keep_scale", value=value)]))
        self.assertTrue(self._spin_until(future.done, 30.0))
        self.assertTrue(future.result().results[0].successful)
        self.diags.clear()
        self.assertTrue(self._spin_until(lambda: len(self.diags) >= 4, 60.0))
        self.assertGreater(int(self.diags[-1]["kept_visual_tokens"]), before)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
