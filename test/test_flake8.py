"""Lint as a test: flake8 over the project's Python files (99 columns, setup.cfg)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_is_clean():
    targets = ["specprune", "specprune_ros", "test", "launch", "setup.py"]
    result = subprocess.run([sys.executable, "-m", "flake8", *targets], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
