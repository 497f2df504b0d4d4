"""CPU load for the tests that must keep working on a busy machine (issue #13): processes
that spin on a core until stopped (SIGTERM at teardown, then SIGKILL if need be; they hold
no ROS resources)."""
from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Iterator, List

BURN = "while True: pass"


@contextlib.contextmanager
def cpu_burners(count: int = 2) -> Iterator[List[subprocess.Popen]]:
    """``count`` processes each burning one CPU core for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
