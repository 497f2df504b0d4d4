"""The LIBERO worker: one LIBERO task environment in a process of its own, driven over a pipe.

Runs in ``.venv-libero`` (LIBERO pins robosuite 1.4.0; the project's venv has 1.5.2), so
this module imports only the standard library and numpy at the top, and LIBERO / robosuite
inside the worker. The parent side (``libero_env.LiberoWorker``) starts it as::

    .venv-libero/bin/python specprune_ros/sim/libero_worker.py

Wire format, both ways: an 8-byte big-endian length, then a pickle (protocol 4) of plain
Python values only. numpy arrays travel as ``{"__ndarray__": [dtype, shape, bytes]}``, so
neither side unpickles the other's numpy (numpy 2.x here, 1.26 in the project's venv).
Request ``{"cmd": str, "args": dict}``; reply ``{"ok": value}`` or ``{"error": type name,
"message": str, "traceback": str}``. The worker reads requests one at a time and exits on
end of input, on ``shutdown``, or when its parent process goes away.

Rendering costs ~84 ms per 256 x 256 view on a CPU (physics ~11 ms per tick), so the camera
observables render only on the ticks that ask for them: between those, each camera's sensor
is swapped for a stub returning a blank frame, which leaves robosuite's observable timing
untouched and the returned frames the ones LIBERO itself would have returned on that tick.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence

import numpy as np

HEADER = struct.Struct(">Q")
ARRAY_TAG = "__ndarray__"
#: Views (robosuite camera names) LIBERO renders, in OpenVLA-OFT's order (third person, wrist).
VIEWS = ("agentview", "robot0_eye_in_hand")
#: Observation entries left out of replies: robosuite's concatenations of the others.
_CONCATENATED = ("robot0_proprio-state", "object-state", "image-state")
#: Suffixes of the fixture state every reply adds (not ``_pos``: these are no movable objects):
#: each BDDL region site's world position, each fixture's pose, each fixture joint's position.
SITE_POS, FIXTURE_POS, FIXTURE_QUAT, JOINT_QPOS = ("_site_xpos", "_fixture_xpos",
                                                   "_fixture_xquat", "_joint_qpos")
_PARENT_POLL_S = 1.0


# --------------------------------------------------------------------------- wire format
def to_plain(value: Any) -> Any:
    """``value`` with numpy arrays / scalars replaced by plain, numpy-version-free values."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return {ARRAY_TAG: [arr.dtype.str, list(arr.shape), arr.tobytes()]}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def from_plain(value: Any) -> Any:
    """Inverse of ``to_plain``: tagged arrays back to (writable) numpy arrays."""
    if isinstance(value, dict):
        if set(value) == {ARRAY_TAG}:
            dtype, shape, data = value[ARRAY_TAG]
            return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_plain(v) for v in value)
    return value


def write_message(stream: BinaryIO, message: Any) -> None:
    """Frame and write one message, then flush."""
    payload = pickle.dumps(to_plain(message), protocol=4)
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_exact(read: Callable[[int], bytes], size: int) -> Optional[bytes]:
    """``size`` bytes from ``read``; None on end of stream before the first byte,
    EOFError when the stream ends inside the block."""
    chunks, got = [], 0
    while got < size:
        chunk = read(size - got)
        if not chunk:
            if got == 0:
                return None
            raise EOFError(f"stream ended after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(read: Callable[[int], bytes]) -> Optional[Any]:
    """One framed message, or None at a clean end of stream."""
    header = read_exact(read, HEADER.size)
    if header is None:
        return None
    payload = read_exact(read, HEADER.unpack(header)[0])
    if payload is None:
        raise EOFError("stream ended between a header and its payload")
    return from_plain(pickle.loads(payload))


# --------------------------------------------------------------------------- the environment
class LiberoTaskServer:
    """The commands of the worker over one LIBERO task environment (built by ``make``)."""

    def __init__(self) -> None:
        self.env: Any = None
        self.init_states: Optional[np.ndarray] = None
        self._real_sensors: Dict[str, Callable] = {}
        self._stubs: Dict[str, Callable] = {}
        self._renders = [0]

    # ---------------------------------------------------------------- commands
    def hello(self) -> Dict[str, Any]:
        """Versions and process id (also proves the imports work)."""
        import libero
        import mujoco
        import robosuite

        return {"pid": os.getpid(), "python": sys.version.split()[0],
                "numpy": np.__version__, "mujoco": mujoco.__version__,
                "robosuite": robosuite.__version__, "libero": os.path.dirname(libero.__file__)}

    def suites(self) -> List[str]:
        """Every benchmark name LIBERO registers (libero_spatial, libero_object, ...)."""
        from libero.libero import benchmark

        return sorted(benchmark.get_benchmark_dict())

    def tasks(self, suite: str) -> List[Dict[str, Any]]:
        """The tasks of ``suite``, in the benchmark's order."""
        bench = _suite(suite)
        return [_task_info(bench, i) for i in range(bench.n_tasks)]

    def make(self, suite: str, task: int, camera_size: int = 256, seed: int = 0,
             hard_reset: bool = True) -> Dict[str, Any]:
        """Build ``suite``'s task ``task`` (closing any previous one) and seed it, as
        openvla-oft's get_libero_env does (env.seed(0) right after construction)."""
        from libero.libero import get_libero_path
        from libero.libero.envs import OffScreenRenderEnv

        self.close()
        _count_renders(self._renders)
        bench = _suite(suite)
        if not 0 <= task < bench.n_tasks:
            raise ValueError(f"task {task} is not in {suite} (0..{bench.n_tasks - 1})")
        info = _task_info(bench, task)
        bddl = os.path.join(get_libero_path("bddl_files"), info["problem_folder"],
                            info["bddl_file"])
        start = time.perf_counter()
        self.env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=int(camera_size),
                                      camera_widths=int(camera_size),
                                      hard_reset=bool(hard_reset))
        self.env.seed(int(seed))
        self.init_states = np.asarray(bench.get_task_init_states(task))
        self._stub_cameras()
        info.update(build_s=round(time.perf_counter() - start, 2),
                    n_init_states=int(len(self.init_states)),
                    instruction=str(self.env.language_instruction),
                    objects_of_interest=list(self.env.obj_of_interest),
                    goal=[list(map(str, g)) for g in self.env.env.parsed_problem["goal_state"]])
        return info

    def reset(self, seed: Optional[int] = None) -> Dict[str, Any]:
        """A new episode from the environment's own placement sampler (development initial
        states): ``seed`` reseeds LIBERO's generator (numpy's global one) first."""
        env = self._env()
        if seed is not None:
            env.seed(int(seed))
        raw = env.reset()
        self._stub_cameras()
        return self._reply(raw, (), reward=0.0, done=False)

    def set_init_state(self, index: int) -> Dict[str, Any]:
        """reset(), then the benchmark's fixed initial state ``index`` (the claim set), as
        openvla-oft's run_episode does."""
        env = self._env()
        states = self.init_states
        if not 0 <= index < len(states):
            raise ValueError(f"initial state {index} is not in 0..{len(states) - 1}")
        env.reset()
        self._stub_cameras()
        raw = env.set_init_state(states[index])
        return self._reply(raw, (), reward=0.0, done=False)

    def step(self, action: Sequence[float], views: Sequence[str] = ()) -> Dict[str, Any]:
        """One control tick; the cameras in ``views`` render this tick's frames."""
        env = self._env()
        act = np.asarray(action, dtype=np.float64)
        if act.shape != (7,) or not np.all(np.isfinite(act)):
            raise ValueError(f"action must be 7 finite numbers, got {np.asarray(action)!r}")
        self._swap_sensors(views, real=True)
        try:
            raw, reward, done, _ = env.step(act.tolist())
        finally:
            self._swap_sensors(views, real=False)
        return self._reply(raw, views, reward=float(reward), done=bool(done))

    def render(self, views: Sequence[str] = VIEWS) -> Dict[str, np.ndarray]:
        """Frames of ``views`` at the current state (no time passes), as LIBERO returns them
        (OpenGL row order: bottom row first)."""
        self._env()
        cache = self.env.env._obs_cache
        return {f"{v}_image": np.asarray(self._real_sensor(v)(cache)) for v in views}

    def cameras(self, views: Sequence[str] = VIEWS) -> Dict[str, Dict[str, np.ndarray]]:
        """Each view's pinhole camera now (the pose of the last rendered / stepped state):
        ``intrinsics`` (3, 3) in pixels of the rendered frame and ``extrinsics`` (4, 4), the
        camera's pose in the world with x right, y down, z forward (the convention of
        robosuite's camera_utils, whose module needs h5py, absent here). A world point
        then lands at column u, row v of the frame flipped upside down (LIBERO's frames
        come bottom row first)."""
        env = self._env().env
        model, data = env.sim.model, env.sim.data
        out = {}
        for view in views:
            self._observable(view)
            index, cam = env.camera_names.index(view), model.camera_name2id(view)
            height, width = env.camera_heights[index], env.camera_widths[index]
            # MuJoCo's pinhole: vertical field of view cam_fovy (degrees), square pixels,
            # principal point at the centre; the camera looks along its -z with y up, so
            # y and z flip for the x right / y down / z forward convention
            focal = 0.5 * height / np.tan(np.radians(model.cam_fovy[cam]) / 2)
            pose = np.eye(4)
            pose[:3, :3] = np.asarray(data.cam_xmat[cam]).reshape(3, 3) @ np.diag([1, -1, -1])
            pose[:3, 3] = data.cam_xpos[cam]
            out[view] = {"intrinsics": np.array([[focal, 0, width / 2], [0, focal, height / 2],
                                                 [0, 0, 1]]),
                         "extrinsics": pose, "size": np.array([height, width])}
        return out

    def object_points(self, names: Sequence[str]) -> Dict[str, np.ndarray]:
        """Per object or fixture: (8 * geoms, 3) world corners of the bounding boxes of
        the visual geoms (group 1; every geom where it has none) of its body and the bodies
        below it, at the current state: its extent, for projecting into a view."""
        env = self._env().env
        model, data = env.sim.model, env.sim.data
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
        out = {}
        for name in names:
            geoms = _subtree_geoms(model, _body_of(env, name))
            aabb = np.asarray(model.geom_aabb)[geoms]  # (G, 6): centre, half size (geom frame)
            local = aabb[:, None, :3] + aabb[:, None, 3:] * signs[None]  # (G, 8, 3)
            rot = np.asarray(data.geom_xmat)[geoms].reshape(-1, 3, 3)
            centre = np.asarray(data.geom_xpos)[geoms, None]  # (G, 1, 3)
            world = np.einsum("gij,gkj->gki", rot, local) + centre
            out[name] = world.reshape(-1, 3)
        return out

    def object_masks(self, view: str, names: Sequence[str]) -> Dict[str, np.ndarray]:
        """Per object: (H, W) bool, the pixels of ``view`` that show one of its geoms now,
        from MuJoCo's segmentation render (in LIBERO's row order, bottom row first, like
        the frames). The renderer's own answer, to check projections against."""
        env = self._env().env
        self._observable(view)
        index = env.camera_names.index(view)
        seg = env.sim.render(width=env.camera_widths[index], height=env.camera_heights[index],
                             camera_name=view, segmentation=True)  # (H, W, 2) type, id
        geom_type = 5  # mujoco.mjtObj.mjOBJ_GEOM
        out = {}
        for name in names:
            geoms = _subtree_geoms(env.sim.model, _body_of(env, name), visual_only=False)
            out[name] = (seg[..., 0] == geom_type) & np.isin(seg[..., 1], geoms)
        return out

    def stats(self) -> Dict[str, int]:
        """Counters: camera frames rendered since the worker started."""
        return {"frames_rendered": self._renders[0]}

    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state (what LIBERO's initial-state files hold)."""
        return np.asarray(self._env().get_sim_state())

    def close(self) -> None:
        """Close the task environment, if any."""
        if self.env is not None:
            env, self.env = self.env, None
            self._real_sensors, self._stubs = {}, {}
            env.close()

    # ---------------------------------------------------------------- internals
    def _env(self) -> Any:
        if self.env is None:
            raise RuntimeError("no task environment: call make(suite, task) first")
        return self.env

    def _observable(self, view: str) -> Any:
        observables = self.env.env._observables
        name = f"{view}_image"
        if name not in observables:
            raise ValueError(f"unknown view {view!r}; LIBERO renders {list(VIEWS)}")
        return observables[name]

    def _real_sensor(self, view: str) -> Callable:
        self._observable(view)
        return self._real_sensors[view]

    def _stub_cameras(self) -> None:
        """After construction or a reset (a hard reset installs fresh sensors): remember each
        camera's real sensor and put a blank-frame stub in its place."""
        for view in VIEWS:
            observable = self._observable(view)
            if observable._sensor is not self._stubs.get(view):
                self._real_sensors[view] = observable._sensor
                self._stubs[view] = _blank_sensor(observable._sensor, self.env.env, view)
            observable._sensor = self._stubs[view]

    def _swap_sensors(self, views: Sequence[str], real: bool) -> None:
        observables = [self._observable(view) for view in views]  # unknown views raise first
        table = self._real_sensors if real else self._stubs
        for view, observable in zip(views, observables):
            observable._sensor = table[view]

    def _reply(self, raw: Dict[str, Any], views: Sequence[str], reward: float,
               done: bool) -> Dict[str, Any]:
        """The observation without blank frames and concatenations, plus reward / done /
        success (the BDDL goal) and the robot base pose."""
        images = {f"{v}_image" for v in views}
        obs = {k: np.asarray(v) for k, v in raw.items()
               if k not in _CONCATENATED and (not k.endswith("_image") or k in images)}
        sim, robot = self.env.sim, self.env.env.robots[0]
        body = sim.model.body_name2id(robot.robot_model.root_body)
        obs["robot0_base_pos"] = np.array(sim.data.body_xpos[body])
        obs["robot0_base_quat"] = np.roll(np.array(sim.data.body_xquat[body]), -1)  # xyzw
        obs.update(_fixture_state(self.env.env))
        return {"obs": obs, "reward": reward, "done": done,
                "success": bool(self.env.check_success()),
                "timestep": int(self.env.env.timestep)}


def _fixture_state(env: Any) -> Dict[str, np.ndarray]:
    """What an expert needs of the scene's fixtures: region sites (``<site>_site_xpos``),
    fixture poses (``<fixture>_fixture_xpos`` / ``_fixture_xquat``, x y z w) and the
    positions of their joints (``<joint>_joint_qpos``: drawers, doors, the stove's knob)."""
    model, data, out = env.sim.model, env.sim.data, {}
    for name in env.object_sites_dict:
        out[name + SITE_POS] = np.array(data.site_xpos[model.site_name2id(name)])
    for name in env.fixtures_dict:
        body = env.obj_body_id[name]
        out[name + FIXTURE_POS] = np.array(data.body_xpos[body])
        out[name + FIXTURE_QUAT] = np.roll(np.array(data.body_xquat[body]), -1)
    for name in list(env.fixtures_dict) + list(env.objects_dict):
        for joint in env.get_object(name).joints:  # articulations: slide (2), hinge (3)
            if model.jnt_type[model.joint_name2id(joint)] in (2, 3):
                out[joint + JOINT_QPOS] = np.array(data.qpos[model.get_joint_qpos_addr(joint)])
    return out


def _body_of(env: Any, name: str) -> int:
    """The body id of LIBERO object or fixture ``name``; ValueError naming the known ones."""
    if name not in env.obj_body_id:
        raise ValueError(f"no object {name!r}; this task has {sorted(env.obj_body_id)}")
    return int(env.obj_body_id[name])


def _subtree_geoms(model: Any, root: int, visual_only: bool = True) -> np.ndarray:
    """Indices of the geoms of body ``root`` and its descendants: with ``visual_only`` the
    visual ones (group 1) where there are any, else all."""
    parents = np.asarray(model.body_parentid)
    inside = np.zeros(len(parents), bool)
    inside[root] = True
    for body in range(root + 1, len(parents)):  # MuJoCo numbers a parent before its children
        inside[body] = inside[parents[body]]
    geoms = np.flatnonzero(inside[np.asarray(model.geom_bodyid)])
    visual = geoms[np.asarray(model.geom_group)[geoms] == 1]
    if len(geoms) == 0:
        raise ValueError(f"body {root} has no geoms")
    return visual if len(visual) and visual_only else geoms


def _blank_sensor(real: Callable, env: Any, view: str) -> Callable:
    """A sensor returning a black frame of the camera's size (keeps the real one's tags)."""
    frame = np.zeros((env.camera_heights[env.camera_names.index(view)],
                      env.camera_widths[env.camera_names.index(view)], 3), dtype=np.uint8)

    def blank(obs_cache: Dict[str, Any]) -> np.ndarray:
        return frame

    blank.__modality__ = getattr(real, "__modality__", "image")
    blank.__name__ = getattr(real, "__name__", f"{view}_image")
    return blank


def _count_renders(counter: List[int]) -> None:
    """Count every camera frame robosuite renders (MjSim.render) in ``counter[0]``."""
    from robosuite.utils.binding_utils import MjSim

    if getattr(MjSim.render, "_counted", False):
        return
    render = MjSim.render

    def counted(sim: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return render(sim, *args, **kwargs)

    counted._counted = True
    MjSim.render = counted


def _suite(name: str) -> Any:
    from libero.libero import benchmark

    suites = benchmark.get_benchmark_dict()
    if name not in suites:
        raise ValueError(f"unknown suite {name!r}; LIBERO has {sorted(suites)}")
    return suites[name]()


def _task_info(bench: Any, index: int) -> Dict[str, Any]:
    task = bench.get_task(index)
    return {"index": index, "name": task.name, "language": task.language,
            "problem_folder": task.problem_folder, "bddl_file": task.bddl_file}


# --------------------------------------------------------------------------- the process
def serve(read: Callable[[int], bytes], out: BinaryIO, server: Any) -> None:
    """Answer requests until end of input or ``shutdown``; errors become error replies."""
    while True:
        request = read_message(read)
        if request is None:
            return
        cmd, args = request.get("cmd"), request.get("args") or {}
        if cmd == "shutdown":
            server.close()
            write_message(out, {"ok": None})
            return
        try:
            method = getattr(server, cmd, None) if not str(cmd).startswith("_") else None
            if method is None:
                raise ValueError(f"unknown command {cmd!r}")
            reply = {"ok": method(**args)}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
            reply = {"error": type(exc).__name__, "message": str(exc),
                     "traceback": traceback.format_exc()}
        write_message(out, reply)


def _exit_with_parent(parent: int) -> None:
    """Leave (without cleanup: the parent is gone) once the parent process has died."""
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(3)


def main() -> int:
    """Take fds 0 / 1 as the channel; everything the libraries print goes to stderr and
    anything that reads stdin (a set-up prompt) gets end of file."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("MUJOCO_GL", "egl")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    server = LiberoTaskServer()
    try:
        serve(channel_in.read, channel_out, server)
    except (BrokenPipeError, EOFError):
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
