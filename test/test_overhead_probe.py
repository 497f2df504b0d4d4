"""The overhead probe (specprune-eval's sibling for the node's own cost) still runs end to
end: it starts the policy node as a process, feeds it and reports figures. It once broke
silently when the node began refusing preset models on robot paths (#13)."""
import re
import subprocess
import sys
from pathlib import Path

from ros_helpers import ros_environment

REPO = Path(__file__).resolve().parents[1]


def test_probe_reports_the_node_overhead_from_real_chunks(tmp_path: Path) -> None:
    env = ros_environment(tmp_path, 0)
    env.pop("ROS_DOMAIN_ID")  # the probe picks its own domain
    out = subprocess.run([sys.executable, "-m", "specprune_ros.eval.overhead_probe",
                          "--model", "tiny", "--seconds", "3", "--rate", "10"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    chunks = int(re.search(r"^chunks: (\d+)", out.stdout, re.M).group(1))
    overhead = re.search(r"^node overhead ms: +median ([\d.]+), p95 [\d.]+ \(n=(\d+)\)",
                         out.stdout, re.M)
    assert chunks > 0 and overhead and int(overhead.group(2)) > 0, out.stdout
