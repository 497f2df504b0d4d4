"""``specprune-bag2demos BAG OUT.hdf5``: recorded episodes -> the robomimic / LIBERO-style
HDF5 demonstrations ``specprune-train`` reads (``specprune_ros.sim.demos`` layout).

    specprune-bag2demos bags/run1 demos/robot.hdf5 [--successful-only]

One demo per episode (the policy node's ~/reset markers split the bag). One sample per
matched set of camera frames, rebuilt with the node's own code (``bag_observations``):
``obs/agentview_image`` and ``obs/robot0_eye_in_hand_image`` (views 0 and 1, as recorded),
``obs/proprio`` (the node's proprio layout, LIBERO's 8-D state by default). The action of a
sample is what was commanded at its stamp: row i of the newest recorded action chunk, i =
(frame stamp - chunk stamp) x control_rate_hz (the node's parameter), in the chunk's
un-normalised action space, as the simulator's demos record the expert's action. Frames
before an episode's first chunk or past the end of the last one have no action and are
left out. ``success``: /task_success was true during the episode, where it was recorded
(unknown: true). No LeRobot exporter here: its package pulls torch video decoding and the
hub client, which this project does not install.
"""
from __future__ import annotations

import argparse
import bisect
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from specprune_ros.node.bag_observations import Rebuilt, node_parameters, rebuild
from specprune_ros.node.bag_reader import BagError, RecordedBag, decode, read_bag
from specprune_ros.node.tf_motion import stamp_seconds
from specprune_ros.sim.demos import DemoWriter

CAMERA_KEYS = ("agentview", "robot0_eye_in_hand")  # demo_dataset.CAMERAS without "_image"


def recorded_chunks(bag: RecordedBag, topic: str) -> List[Tuple[float, np.ndarray]]:
    """(stamp, actions) of every recorded chunk, in stamp order."""
    out = []
    for message in bag.on(topic):
        msg = decode(message)
        out.append((stamp_seconds(msg.header.stamp),
                    np.stack([np.asarray(p.positions, dtype=np.float32) for p in msg.points])))
    return sorted(out, key=lambda c: c[0])


def action_at(chunks: Sequence[Tuple[float, np.ndarray]], stamps: Sequence[float],
              stamp: float, rate_hz: float) -> Optional[np.ndarray]:
    """The row of the newest chunk at or before ``stamp`` that falls on it, or None."""
    k = bisect.bisect_right(stamps, stamp + 1e-9) - 1
    if k < 0:
        return None
    start, actions = chunks[k]
    row = int(round((stamp - start) * rate_hz))
    return actions[row] if row < len(actions) else None


def success_by_episode(bag: RecordedBag, rebuilt: Rebuilt) -> Dict[int, bool]:
    """Episode -> /task_success seen true between its first and last stamp (where recorded)."""
    ok_ns = [m.log_ns for m in bag.on("/task_success") if decode(m).data]
    out: Dict[int, bool] = {}
    if not bag.counts().get("/task_success"):
        return out
    bounds: Dict[int, List[int]] = {}
    for step in rebuilt.steps:
        bounds.setdefault(step.episode, []).append(step.log_ns)
    for episode, ns in bounds.items():
        out[episode] = any(min(ns) <= t <= max(ns) + 2_000_000_000 for t in ok_ns)
    return out


def episodes(bag: RecordedBag, proprio_dim: int = 8) -> List[Dict[str, Any]]:
    """The demos of ``bag`` as DemoWriter episodes."""
    values = node_parameters(bag)[0]
    rebuilt = rebuild(bag, proprio_dim, use_chunks=False)
    chunks = recorded_chunks(bag, values["action_chunk_topic"])
    if not chunks:
        raise BagError(f"bag {bag.path}: no action chunks on {values['action_chunk_topic']}: "
                       f"nothing says what was commanded")
    stamps = [c[0] for c in chunks]
    rate = float(values["control_rate_hz"])
    success = success_by_episode(bag, rebuilt)
    demos: Dict[int, Dict[str, Any]] = {}
    for step in rebuilt.steps:
        action = action_at(chunks, stamps, step.observation.stamp, rate)
        if action is None:
            continue
        demo = demos.setdefault(step.episode, {"instruction": step.observation.instruction,
                                               "success": success.get(step.episode, True),
                                               "actions": [], "proprio": [],
                                               "images": {k: [] for k in CAMERA_KEYS}})
        demo["actions"].append(action)
        demo["proprio"].append(np.asarray(step.observation.proprio, dtype=np.float32))
        for key, img in zip(CAMERA_KEYS, step.observation.images):
            demo["images"][key].append(img)
    return [{"instruction": d["instruction"], "success": d["success"],
             "actions": np.stack(d["actions"]).astype(np.float32),
             "proprio": np.stack(d["proprio"]),
             "images": {k: np.stack(v) for k, v in d["images"].items()}}
            for _, d in sorted(demos.items())]


def convert(bag_path: str, out: str, successful_only: bool = False) -> Dict[str, Any]:
    bag = read_bag(bag_path)
    found = episodes(bag)
    kept = [d for d in found if d["success"] or not successful_only]
    writer = DemoWriter(out, {"source": "specprune-bag2demos", "bag": bag.path,
                              "bag_problems": bag.problems, "metadata": bag.metadata()})
    for demo in kept:
        writer.add(demo)
    writer.close()
    return {"episodes": len(found), "written": len(kept), "samples": writer.total,
            "problems": bag.problems}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="specprune-bag2demos",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("bag")
    parser.add_argument("out", help="HDF5 file to write")
    parser.add_argument("--successful-only", action="store_true",
                        help="leave out episodes in which /task_success never became true")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.bag, args.out, args.successful_only)
    except BagError as exc:
        print(f"specprune-bag2demos: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {summary['written']} of {summary['episodes']} episodes, "
          f"{summary['samples']} samples")
    for problem in summary["problems"]:
        print(f"problem: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
