"""The parent side of the LIBERO worker: start it, send commands, get typed replies. No ROS.

LIBERO runs in ``.venv-libero`` (robosuite 1.4) and the project in ``.venv`` (robosuite
1.5.2), so each task environment lives in a worker process (``libero_worker.py``) that this
module drives over a pipe. Usage::

    with LiberoWorker() as worker:
        info = worker.make("libero_spatial", 0)           # ~7 s (more on a busy machine)
        step = worker.reset(seed=1000)                     # development initial state
        step = worker.set_init_state(0)                    # benchmark initial state 0
        step = worker.step(action, views=VIEWS)            # renders only when views are given
        step.obs["akita_black_bowl_1_pos"], step.success

A failure inside the worker raises ``LiberoWorkerError`` here (its type, message and the
worker's traceback); a worker that died raises ``LiberoWorkerDied`` with its exit code and
last stderr lines; a reply later than ``timeout_s`` kills the worker and raises
``TimeoutError``. The worker exits by itself when this process dies.
"""
from __future__ import annotations

import collections
import os
import select
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Sequence

import numpy as np

from specprune.config import check_value, int_as_float

from specprune_ros.sim import libero_worker
from specprune_ros.sim.libero_worker import VIEWS, read_message, write_message

ROOT = Path(__file__).resolve().parents[2]
#: The worker's interpreter unless SPECPRUNE_LIBERO_PYTHON names another.
DEFAULT_PYTHON = ROOT / ".venv-libero" / "bin" / "python"
WORKER_SCRIPT = Path(libero_worker.__file__).resolve()
_STDERR_LINES = 200


def libero_python() -> Optional[Path]:
    """The LIBERO venv's python if it is installed (scripts/setup.sh), else None."""
    path = Path(os.environ.get("SPECPRUNE_LIBERO_PYTHON", str(DEFAULT_PYTHON)))
    return path if path.is_file() and os.access(path, os.X_OK) else None


class LiberoWorkerError(RuntimeError):
    """An exception raised inside the worker; ``remote_type`` / ``remote_traceback`` say
    which and where."""

    def __init__(self, cmd: str, remote_type: str, message: str, remote_traceback: str):
        super().__init__(f"LIBERO worker, {cmd}: {remote_type}: {message}")
        self.cmd, self.remote_type, self.remote_traceback = cmd, remote_type, remote_traceback


class LiberoWorkerDied(RuntimeError):
    """The worker process is gone (crashed, killed, or closed)."""


@dataclass(frozen=True)
class LiberoWorkerConfig:
    """How to run the worker.

    python: the .venv-libero interpreter (None: ``libero_python()``). mujoco_gl: MuJoCo's
    offscreen backend (egl, or osmesa). timeout_s: longest wait for one reply (building a
    task takes ~7 s alone, several times that on a busy 2-core machine). echo_stderr: also
    copy the worker's stderr to this process's stderr (it is always kept for error messages).
    """

    python: Optional[str] = None
    mujoco_gl: str = "egl"
    timeout_s: float = 600.0
    echo_stderr: bool = False

    def __post_init__(self) -> None:
        check_value("LiberoWorkerConfig", "timeout_s", int_as_float(self.timeout_s, float),
                    float, 1e-3, None)
        if self.mujoco_gl not in ("egl", "osmesa"):
            raise ValueError(f"LiberoWorkerConfig.mujoco_gl={self.mujoco_gl!r}: must be "
                             "'egl' or 'osmesa'")
        if not isinstance(self.echo_stderr, bool):
            raise ValueError(f"LiberoWorkerConfig.echo_stderr={self.echo_stderr!r}: must be "
                             "a bool")


@dataclass
class LiberoStep:
    """One reply of reset / set_init_state / step: LIBERO's observation (``obs``: every
    non-image entry, e.g. ``robot0_eef_pos``, ``<object>_pos``, ``<object>_quat``, plus the
    ``<view>_image`` frames asked for, as LIBERO returns them: bottom row first), reward,
    done (LIBERO's: the goal holds), success (the BDDL goal, checked now), timestep."""

    obs: Dict[str, np.ndarray]
    reward: float
    done: bool
    success: bool
    timestep: int
    images: Dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.images = {k[:-len("_image")]: v for k, v in self.obs.items()
                       if k.endswith("_image")}

    @property
    def eef_pos(self) -> np.ndarray:
        """Grip-site position (3,), world frame."""
        return self.obs["robot0_eef_pos"]

    @property
    def eef_quat(self) -> np.ndarray:
        """Hand orientation (x, y, z, w), world frame."""
        return self.obs["robot0_eef_quat"]

    @property
    def gripper_qpos(self) -> np.ndarray:
        """The two finger joints (2,)."""
        return self.obs["robot0_gripper_qpos"]

    @property
    def objects(self) -> List[str]:
        """Names of the objects whose pose the observation carries."""
        return [k[:-len("_pos")] for k in self.obs
                if k.endswith("_pos") and not k.startswith("robot0_")
                and not k.endswith("_to_robot0_eef_pos")]

    def object_pos(self, name: str) -> np.ndarray:
        """World position (3,) of object ``name``; KeyError naming the known objects."""
        key = f"{name}_pos"
        if key not in self.obs:
            raise KeyError(f"no object {name!r} in this task; it has {self.objects}")
        return self.obs[key]


class LiberoWorker:
    """A LIBERO worker process and its command channel (one request at a time)."""

    def __init__(self, config: Optional[LiberoWorkerConfig] = None) -> None:
        self.config = config or LiberoWorkerConfig()
        python = self.config.python or libero_python()
        if python is None or not Path(python).is_file():
            raise FileNotFoundError(
                f"no LIBERO interpreter at {python or DEFAULT_PYTHON}: run scripts/setup.sh "
                "(it installs .venv-libero) or set SPECPRUNE_LIBERO_PYTHON")
        env = dict(os.environ, MUJOCO_GL=self.config.mujoco_gl,
                   PYOPENGL_PLATFORM=self.config.mujoco_gl, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # the worker imports LIBERO's venv only
        self._stderr: Deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [str(python), str(WORKER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        self._closed = False

    # ---------------------------------------------------------------- commands
    def hello(self) -> Dict[str, Any]:
        """Versions of Python, numpy, MuJoCo, robosuite in the worker, and its pid."""
        return self.request("hello")

    def suites(self) -> List[str]:
        """Every benchmark name LIBERO registers."""
        return self.request("suites")

    def tasks(self, suite: str) -> List[Dict[str, Any]]:
        """``suite``'s tasks: index, name, language, problem_folder, bddl_file."""
        return self.request("tasks", suite=suite)

    def make(self, suite: str, task: int, camera_size: int = 256, seed: int = 0,
             hard_reset: bool = True) -> Dict[str, Any]:
        """Build a task environment (replacing the previous one); its description
        (language, BDDL instruction, goal, objects of interest, number of fixed initial
        states). ``hard_reset=False`` keeps the model across resets (0.2 s instead of 6-20 s
        on a busy 2-core machine) but also keeps the fixtures where construction put them, so
        objects that start on a fixture (LIBERO-Spatial's stove and cabinet tasks) land off
        it: only for quick checks of table-top tasks, never for demos or evaluation."""
        return self.request("make", suite=suite, task=int(task), camera_size=int(camera_size),
                            seed=int(seed), hard_reset=bool(hard_reset))

    def reset(self, seed: Optional[int] = None) -> LiberoStep:
        """A development initial state drawn by LIBERO's sampler from ``seed``."""
        return LiberoStep(**self.request("reset", seed=None if seed is None else int(seed)))

    def set_init_state(self, index: int) -> LiberoStep:
        """The benchmark's fixed initial state ``index`` (the claim set)."""
        return LiberoStep(**self.request("set_init_state", index=int(index)))

    def step(self, action: Sequence[float], views: Sequence[str] = ()) -> LiberoStep:
        """One control tick with a 7-D OSC delta action; renders ``views`` on this tick."""
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        return LiberoStep(**self.request("step", action=act, views=list(views)))

    def render(self, views: Sequence[str] = VIEWS) -> Dict[str, np.ndarray]:
        """Frames of ``views`` now (bottom row first, as LIBERO returns them)."""
        frames = self.request("render", views=list(views))
        return {k[:-len("_image")]: v for k, v in frames.items()}

    def cameras(self, views: Sequence[str] = VIEWS) -> Dict[str, Dict[str, np.ndarray]]:
        """Each view's camera now: ``intrinsics`` (3, 3), ``extrinsics`` (4, 4) pose in the
        world (x right, y down, z forward), ``size`` (height, width); see
        ``patch_projection``."""
        return self.request("cameras", views=list(views))

    def object_points(self, names: Sequence[str]) -> Dict[str, np.ndarray]:
        """Per object: world corners (8 * geoms, 3) of its visual geoms' bounding boxes."""
        return self.request("object_points", names=list(names))

    def object_masks(self, view: str, names: Sequence[str]) -> Dict[str, np.ndarray]:
        """Per object: the (H, W) bool pixels of ``view`` showing it (segmentation render,
        bottom row first like the frames)."""
        return self.request("object_masks", view=view, names=list(names))

    def stats(self) -> Dict[str, int]:
        """The worker's counters (frames_rendered)."""
        return self.request("stats")

    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state."""
        return self.request("sim_state")

    # ---------------------------------------------------------------- channel
    def request(self, cmd: str, **args: Any) -> Any:
        """Send one command and wait for its reply (``timeout_s``)."""
        with self._lock:
            if self._closed:
                raise LiberoWorkerDied("the LIBERO worker was closed")
            try:
                write_message(self.process.stdin, {"cmd": cmd, "args": args})
                reply = read_message(self._reader(cmd))
            except (BrokenPipeError, EOFError, ConnectionResetError):
                reply = None
            if reply is None:
                raise self._died(cmd)
        if "error" in reply:
            raise LiberoWorkerError(cmd, reply["error"], reply["message"], reply["traceback"])
        return reply["ok"]

    def _reader(self, cmd: str):
        fd = self.process.stdout.fileno()
        timeout = float(self.config.timeout_s)

        def read(size: int) -> bytes:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                self._kill()
                raise TimeoutError(f"LIBERO worker: no reply to {cmd!r} within {timeout:g} s "
                                   "(the worker was stopped)")
            return os.read(fd, size)
        return read

    def _died(self, cmd: str) -> LiberoWorkerDied:
        try:
            code = self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._kill()
            code = self.process.returncode
        self._closed = True
        self._drain.join(timeout=2.0)
        tail = "\n".join(list(self._stderr)[-15:])
        return LiberoWorkerDied(f"LIBERO worker (pid {self.process.pid}) exited with code "
                                f"{code} during {cmd!r}; last stderr lines:\n{tail}")

    def _drain_stderr(self) -> None:
        import sys

        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stderr.append(line)
            if self.config.echo_stderr:
                print(line, file=sys.stderr)

    @property
    def stderr_tail(self) -> List[str]:
        """The worker's last stderr lines."""
        return list(self._stderr)

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._closed = True

    @property
    def alive(self) -> bool:
        """Whether the worker process is still running."""
        return self.process.poll() is None

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to close its environment and exit; kill it if it does not."""
        if self._closed:
            return
        try:
            self.request("shutdown")
        except (LiberoWorkerDied, LiberoWorkerError, TimeoutError):
            pass
        self._closed = True
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LiberoWorker":
        """Use as a context manager that closes the worker on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the worker."""
        self.close()
