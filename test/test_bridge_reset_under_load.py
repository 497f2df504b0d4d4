"""The simulated arm's ~/reset is answered on a machine that cannot keep up (issue #13).

The bridge's tick timer is always overdue when the simulation runs slower than its
control rate; sharing one mutually exclusive group with it, ~/reset starved (answered
15-32 s late, then not within 60 s, under two CPU burners during the main job). Here the
rate is set far above what rendering allows, two burners run beside it, and every reset
must be answered promptly with a new episode.
"""
import time
from typing import Iterator

import pytest

from load_helpers import cpu_burners
from ros_helpers import NodeProcess, Probe, domain_id, probe_fixture

from std_srvs.srv import Trigger  # noqa: E402  (after ros_helpers: lark warning filtered)

START_TIMEOUT_S = 120.0
ANSWER_S = 15.0


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    domain = domain_id(61)
    with cpu_burners(2):
        bridge = NodeProcess("specprune_ros.sim.sim_bridge_node",
                             ["--ros-args", "--params-file", "config/sim_arm.yaml",
                              "-p", "control_rate_hz:=500.0"],
                             tmp_path_factory.mktemp("bridge_load"), domain, "sim")
        try:
            for probe in probe_fixture("bridge_load_probe", domain):
                probe.process = bridge
                yield probe
        finally:
            bridge.stop()


def test_reset_is_answered_while_the_tick_is_always_overdue(overloaded: Probe) -> None:
    first = overloaded.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request(),
                            START_TIMEOUT_S)
    assert first.success, first.message
    episodes = [first.message]
    for _ in range(3):
        started = time.monotonic()
        response = overloaded.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request(),
                                   ANSWER_S)
        assert response.success, response.message
        assert time.monotonic() - started < ANSWER_S
        episodes.append(response.message)
    assert len(set(episodes)) == 4, episodes  # "episode N (seed S)": a new one each time
    assert overloaded.process.alive(), overloaded.process.log()
