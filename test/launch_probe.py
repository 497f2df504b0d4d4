"""The rclpy side of the launch_testing tests (test_launch*.py): rclpy initialised for the
test class, one probe node per test, spinning it until a condition holds."""
import time

import rclpy


class LaunchProbe:
    """Mixed into a unittest.TestCase: ``self.node`` and ``_spin_until``."""

    probe_name = "specprune_launch_test_probe"
    timeout_s = 120.0

    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()

    @classmethod
    def tearDownClass(cls) -> None:
        rclpy.shutdown()

    def setUp(self) -> None:
        self.node = rclpy.create_node(self.probe_name)

    def tearDown(self) -> None:
        self.node.destroy_node()

    def _spin_until(self, done, timeout=None) -> bool:
        """Spin until ``done()``; False after ``timeout`` s (default ``timeout_s``)."""
        deadline = time.monotonic() + (self.timeout_s if timeout is None else timeout)
        while not done():
            if time.monotonic() > deadline:
                return False
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return True


def sim_policy_description(arguments):
    """generate_test_description's result: sim_policy.launch.py from the installed package
    with the launch ``arguments`` (a dict), then ReadyToTest."""
    import os

    import launch
    import launch.launch_description_sources
    import launch_testing.actions
    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory("specprune_ros")
    sim_policy = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(
            os.path.join(share, "launch", "sim_policy.launch.py")),
        launch_arguments=arguments.items())
    return launch.LaunchDescription([sim_policy, launch_testing.actions.ReadyToTest()]), {}
