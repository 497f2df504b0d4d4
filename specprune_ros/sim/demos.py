"""Record scripted demonstrations of a simulated task to robomimic-style HDF5. No ROS imports.

Each episode is seeded (placement and target colour come from the seed), the scripted
expert acts on the true state, and the executed action is the expert's plus injected
off-nominal motion: Gaussian noise of a per-episode scale and, in some episodes, a push
of a few ticks in a random direction. The recorded label is always the expert's clean
action, so the data show how to recover from states the expert alone never visits.
Only successful episodes are written. Run::

    python -m specprune_ros.sim.demos --episodes 300 --out demos/pick_color.hdf5 --seed 0

File layout (robomimic's)::

    /data                       attrs env_args (JSON), total
    /data/demo_<i>              attrs num_samples, seed, instruction, success, cube_colors
    /data/demo_<i>/actions      (T, 7) float32
    /data/demo_<i>/obs/<camera>_image  (T, 224, 224, 3) uint8 (F frames where frame_ticks is)
    /data/demo_<i>/obs/frame_ticks      optional (F,) int32: the ticks the frames show (a
                                recording that renders every k-th tick only)
    /data/demo_<i>/obs/object_boxes     optional (F, views, cubes, 4) float32: where each
                                cube / object shows in each frame (LIBERO recorder)
    /data/demo_<i>/obs/proprio  (T, 8) float32, LIBERO order, pose in the robot base frame
    /data/demo_<i>/obs/cube_pos (T, cubes, 3) float32, each cube's centre in the robot base
                                frame, in the order of the demo's attrs cube_colors (privileged:
                                labels of training-only auxiliary losses, never an input)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from specprune.config import check_value, int_as_float

from specprune_ros.sim.expert import ExpertConfig, ScriptedExpert
from specprune_ros.sim.sim_arm import ACTION_DIM, SimArm, SimArmConfig, SimObservation


@dataclass(frozen=True)
class NoiseConfig:
    """Off-nominal motion injected into the executed actions (labels stay clean).

    max_noise_std: each episode draws its Gaussian action-noise scale from [0, max].
    push_probability: chance that an episode contains one push.
    push_ticks: (min, max) duration of a push in control ticks.
    push_magnitude: size of the push action on x, y, z (unit direction, random).
    """

    max_noise_std: float = 0.3
    push_probability: float = 0.5
    push_ticks: tuple = (3, 8)
    push_magnitude: float = 0.8

    def __post_init__(self) -> None:
        for name, hi in (("max_noise_std", 1.0), ("push_probability", 1.0),
                         ("push_magnitude", None)):
            value = int_as_float(getattr(self, name), float)
            check_value("NoiseConfig", name, value, float, 0.0, hi)
        check_value("NoiseConfig", "push_ticks", tuple(self.push_ticks), tuple, None, None)
        if len(self.push_ticks) != 2 or not 1 <= self.push_ticks[0] <= self.push_ticks[1]:
            raise ValueError(f"NoiseConfig.push_ticks={self.push_ticks!r}: need (min, max) with "
                             "1 <= min <= max")


@dataclass(frozen=True)
class RecordConfig:
    """What to record: task, horizon, ticks kept after success, expert and noise settings."""

    task: str = "pick_color"
    horizon: int = 200
    ticks_after_success: int = 6
    expert: ExpertConfig = ExpertConfig()
    noise: NoiseConfig = NoiseConfig()


class OffNominal:
    """The executed actions of one seeded episode: the expert's label plus Gaussian noise of
    a per-episode scale and, in some episodes, a push of a few ticks (positions only)."""

    def __init__(self, noise: NoiseConfig, seed: int) -> None:
        self._rng = rng = np.random.default_rng(seed + 1_000_003)  # distinct from the env's
        self.std = rng.uniform(0.0, noise.max_noise_std)
        self.push_at, self.push_len, self.push_dir = -1, 0, np.zeros(3)
        if rng.uniform() < noise.push_probability:
            self.push_at = int(rng.integers(3, 25))
            self.push_len = int(rng.integers(noise.push_ticks[0], noise.push_ticks[1] + 1))
            push_dir = rng.normal(size=3)
            self.push_dir = noise.push_magnitude * push_dir / np.linalg.norm(push_dir)

    def __call__(self, label: np.ndarray, tick: int) -> np.ndarray:
        """The action executed at ``tick`` for the expert's ``label``, clipped to [-1, 1]."""
        executed = np.array(label, dtype=np.float64, copy=True)
        executed[:3] += self._rng.normal(scale=self.std, size=3)
        if self.push_at <= tick < self.push_at + self.push_len:
            executed[:3] = self.push_dir
        return np.clip(executed, -1.0, 1.0)


class SuccessTail:
    """Counts the ticks a recording keeps after the first success: ``ended(success)`` after
    each step is True once ``ticks`` more ticks have run; ``succeeded`` says whether it began."""

    def __init__(self, ticks: int) -> None:
        self.ticks, self.remaining = ticks, None

    @property
    def succeeded(self) -> bool:
        return self.remaining is not None

    def ended(self, success: bool) -> bool:
        if success and self.remaining is None:
            self.remaining = self.ticks
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining < 0


def record_episode(arm: SimArm, seed: int, config: RecordConfig) -> Optional[Dict]:
    """One seeded episode: a dict of arrays, or None when the expert failed within horizon."""
    off_nominal = OffNominal(config.noise, seed)
    expert = ScriptedExpert(config.expert)
    obs = arm.reset(seed=seed)
    instruction = arm.instruction
    images: Dict[str, List[np.ndarray]] = {cam: [] for cam in arm.config.cameras}
    proprio, actions, cubes = [], [], []
    colors = cube_colors(obs)
    tail = SuccessTail(config.ticks_after_success)
    for tick in range(config.horizon):
        label = expert.act(obs)
        for cam in arm.config.cameras:
            images[cam].append(obs.images[cam])
        proprio.append(obs.proprio_in_base())
        cubes.append([obs.point_in_base(obs.extras[f"{c}_cube_pos"]) for c in colors])
        actions.append(label)
        obs = arm.step(off_nominal(label, tick))
        if tail.ended(obs.success):
            break
    if not tail.succeeded:
        return None
    return {
        "seed": seed, "instruction": instruction, "cube_colors": colors,
        "actions": np.asarray(actions, dtype=np.float32),
        "proprio": np.asarray(proprio, dtype=np.float32),
        "cube_pos": np.asarray(cubes, dtype=np.float32).reshape(len(actions), len(colors), 3),
        "images": {cam: np.stack(frames) for cam, frames in images.items()},
    }


def labelled_episode(seed: int, instruction: str, focus: Dict[int, List[str]],
                     parts: List[int], labels: List[np.ndarray], states: List[np.ndarray],
                     positions: List, frame_ticks: List[int], boxes: List,
                     frames: Dict[str, List[np.ndarray]]) -> Dict:
    """The demo dict of an episode labelled part by part (LIBERO's and the LIBERO-shaped
    suites' recorders): ``focus`` maps each part to its [object, target], the other lists
    hold one entry per tick (``parts`` ... ``positions``) or per stored frame."""
    return {"seed": seed, "instruction": instruction, "cube_colors": focus[0],
            "part_focus": [focus[k] for k in sorted(focus)],
            "part": np.asarray(parts, dtype=np.int32),
            "actions": np.asarray(labels, dtype=np.float32),
            "proprio": np.asarray(states, dtype=np.float32),
            "cube_pos": np.asarray(positions, dtype=np.float32),
            "frame_ticks": np.asarray(frame_ticks, dtype=np.int32),
            "object_boxes": np.asarray(boxes, dtype=np.float32),
            "images": {view: np.stack(f) for view, f in frames.items()}}


def cube_colors(obs: SimObservation) -> List[str]:
    """Colours of the task's cubes (``<colour>_cube_pos`` in the privileged state), sorted
    by the task's own order; empty for single-object tasks."""
    return [k[:-len("_cube_pos")] for k in obs.extras if k.endswith("_cube_pos")]


_WORKER_ARM: Optional[SimArm] = None
_WORKER_CONFIG: Optional[RecordConfig] = None


def _worker_init(config: RecordConfig) -> None:
    """Each worker process owns one simulator (GL contexts do not cross processes)."""
    global _WORKER_ARM, _WORKER_CONFIG
    _WORKER_CONFIG = config
    _WORKER_ARM = SimArm(SimArmConfig(task=config.task, horizon=config.horizon))


def _worker_episode(seed: int) -> Optional[Dict]:
    assert _WORKER_ARM is not None and _WORKER_CONFIG is not None
    return record_episode(_WORKER_ARM, seed, _WORKER_CONFIG)


def iter_episodes(seeds: Sequence[int], config: RecordConfig, workers: int) -> Iterator:
    """Episodes for ``seeds`` in order (None for failures), from ``workers`` processes."""
    if workers <= 1:
        _worker_init(config)
        for seed in seeds:
            yield _worker_episode(seed)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(config,)) as pool:
        yield from pool.imap(_worker_episode, seeds)


class DemoWriter:
    """Writes episodes to a robomimic-style HDF5 file as they come."""

    def __init__(self, path: str, env_args: Dict) -> None:
        import h5py

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = h5py.File(path, "w")
        self._data = self._file.create_group("data")
        self._data.attrs["env_args"] = json.dumps(env_args)
        self.count = 0
        self.total = 0

    def add(self, episode: Dict) -> None:
        """One episode; ``cube_pos`` / ``cube_colors`` (privileged simulator labels) and
        ``seed`` are left out where absent (recorded robot episodes), ``success`` is True
        unless given."""
        group = self._data.create_group(f"demo_{self.count}")
        n = len(episode["actions"])
        group.attrs.update(num_samples=n, seed=int(episode.get("seed", -1)),
                           instruction=episode["instruction"],
                           success=bool(episode.get("success", True)))
        if "cube_colors" in episode:
            group.attrs["cube_colors"] = json.dumps(episode["cube_colors"])
        if "part_focus" in episode:  # LIBERO: each part's [object, target] (libero_demos)
            group.attrs["part_focus"] = json.dumps(episode["part_focus"])
        group.create_dataset("actions", data=episode["actions"])
        obs = group.create_group("obs")
        obs.create_dataset("proprio", data=episode["proprio"])
        if "cube_pos" in episode:
            obs.create_dataset("cube_pos", data=episode["cube_pos"])
        if "frame_ticks" in episode:  # frames on these ticks only (LIBERO --frame-every)
            obs.create_dataset("frame_ticks", data=episode["frame_ticks"])
        if "object_boxes" in episode:  # LIBERO: where the objects show (libero_demos)
            obs.create_dataset("object_boxes", data=episode["object_boxes"])
        if "part" in episode:  # LIBERO: the part of the task acting on each tick
            obs.create_dataset("part", data=episode["part"])
        for cam, frames in episode["images"].items():
            obs.create_dataset(f"{cam}_image", data=frames, compression="lzf",
                               chunks=(1,) + frames.shape[1:])
        self.count += 1
        self.total += n

    def close(self) -> None:
        self._data.attrs["total"] = self.total
        self._file.close()


def record(out: str, episodes: int, seed: int, config: RecordConfig, workers: int = 1,
           log=print) -> Dict:
    """Record ``episodes`` successful demos, trying seeds seed, seed+1, ...; a summary dict."""
    arm_cfg = SimArmConfig(task=config.task, horizon=config.horizon)
    env_args = {"task": config.task, "camera_size": arm_cfg.camera_size,
                "control_rate_hz": arm_cfg.control_rate_hz, "cameras": list(arm_cfg.cameras),
                "action_dim": ACTION_DIM, "proprio_frame": "base", "recorder": asdict(config),
                "first_seed": seed}
    writer = DemoWriter(out, env_args)
    tried, start = 0, time.perf_counter()
    next_seed = seed
    try:
        while writer.count < episodes:
            batch = list(range(next_seed, next_seed + (episodes - writer.count)))
            next_seed += len(batch)
            for episode in iter_episodes(batch, config, workers):
                tried += 1
                if episode is not None and writer.count < episodes:
                    writer.add(episode)
                    if writer.count % 25 == 0:
                        log(f"demos: {writer.count}/{episodes} written "
                            f"({time.perf_counter() - start:.0f} s)")
    finally:
        writer.close()
    summary = record_summary(writer, tried, start, out)
    log(f"demos: {json.dumps(summary)}")
    return summary


def record_summary(writer: DemoWriter, tried: int, start: float, out: str) -> Dict:
    """What a recording wrote: demos, episodes tried, samples, the expert's success rate,
    seconds since ``start`` (time.perf_counter), the file."""
    return {"written": writer.count, "tried": tried, "samples": writer.total,
            "expert_success_rate": writer.count / max(tried, 1),
            "seconds": round(time.perf_counter() - start, 1), "out": out}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=300, help="successful demos to write")
    parser.add_argument("--out", default="demos/pick_color.hdf5", help="HDF5 file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--task", default="pick_color", help="simulated task")
    parser.add_argument("--horizon", type=int, default=200, help="ticks before giving up")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="simulator processes")
    parser.add_argument("--noise-std", type=float, default=NoiseConfig.max_noise_std,
                        help="largest per-episode action-noise scale")
    parser.add_argument("--push-probability", type=float,
                        default=NoiseConfig.push_probability, help="episodes with a push")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    try:
        noise = NoiseConfig(max_noise_std=args.noise_std,
                            push_probability=args.push_probability)
        config = RecordConfig(task=args.task, horizon=args.horizon, noise=noise)
        record(args.out, args.episodes, args.seed, config, workers=args.workers)
    except ValueError as exc:
        print(f"specprune-demos: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
