"""``python -m specprune_ros.eval.demo_replay``: recorded demonstrations through the policy
in several pruning configurations, open loop: how far each moves the unpruned policy's
actions on the same observations.

    python -m specprune_ros.eval.demo_replay --policy runs/probe_spatial0/checkpoint \\
        --demos demos/libero/libero_spatial_task00_part04.hdf5 \\
        --configs unpruned,specprune,no_layer_pruning,fastv,random --prune layer_depth=32

OPEN LOOP, like ``specprune-replay`` on a bag (whose configurations, summaries and plot
this reuses), but on demonstration files (``demo_dataset.read_demos``: a file, a folder of
shards, comma-separated): each demo is an episode (the policy reset at its start) and every
``--stride``-th frame of it a policy step (LIBERO shards store a frame every 4th tick and a
policy step spans a chunk of 8: stride 2). It is cheap (no simulator) and deterministic, and
tells which part of a configuration moves the actions; closed-loop success is
``specprune-eval``'s.

``--prune FIELD=VALUE`` sets a PruneConfig default under every configuration (as
``specprune-eval``); ``--set prune.FIELD=v1,v2`` adds SpecPrune at each value. FastV and
random dropping keep SpecPrune's budget per step (its kept visual tokens on the same
observation), as ``specprune-eval`` does.

Where the demos record ``obs/object_boxes`` (the LIBERO and tabletop recorders), each
SpecPrune configuration also reports which share of the patches showing the task's object
and target its selection kept, next to the share a uniformly random subset of the same size
keeps: whether the selection finds what the instruction names. FastV and random report the
same (their one-shot drop's tokens; random's share is the uniform one by construction), and
``--overlay PNG`` draws the kept tokens of ``--overlay-steps`` sampled steps per
configuration with the labelled patches outlined (token_maps.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


from specprune import Observation, load_policy
from specprune.bench import machine
from specprune.config import parse_overrides
from specprune.model.folder_hash import checkpoint_hash
from specprune.model.processing import center_crop_box
from specprune.train.demo_dataset import DemoFileError, demo_files, read_demos
from specprune.train.patch_boxes import box_patch_labels, to_model_frame
from specprune_ros.eval import token_maps
from specprune_ros.eval.eval_results import FASTV, RANDOM, SPECPRUNE, UNPRUNED
from specprune_ros.eval.replay import (OPEN_LOOP, Config, StepOut, configurations, parse_sets,
                                       plot, run_config, summarize)
from specprune_ros.node.bag_observations import RebuiltStep

TICK_S = 0.05  # LIBERO's control period (20 Hz): a step's stamp is its tick / 20
#: a patch shows an object when its box covers this share of the patch or holds the box's
#: centre (patch_boxes.box_patch_labels): the attention loss's default rule, 10 pixels
#: (TrainConfig.colour_min_pixels) of a 14-pixel patch's 196
BOX_MIN_COVER = 10 / 196
PARTS = ("object", "target")  # obs/object_boxes' order: the part's object, then its target


def demo_steps(path: str, policy, stride: int, max_demos: Optional[int]
               ) -> Tuple[List[RebuiltStep], Optional[List[np.ndarray]]]:
    """Every ``stride``-th frame of each demo as a step of its own episode; with them, where
    the demos record obs/object_boxes, each step's patch labels ((views, patches): 0 none,
    1 the part's object, 2 its target, from the boxes in the model's input frame), else
    None."""
    cfg = policy.model.cfg
    demos = read_demos(path, cfg.chunk, policy.layout.action_dim, policy.layout.proprio_dim,
                       cfg.image_size, max_demos)
    top, side = center_crop_box(cfg.image_size, cfg.center_crop_scale)
    grid = int(round(policy.model.vision_backbone.num_patches ** 0.5))
    labels: Optional[List[np.ndarray]] = [] if demos.object_boxes is not None else None
    steps: List[RebuiltStep] = []
    for d in range(len(demos.names)):
        for n, i in enumerate(demos.samples_of([d])):
            if n % stride:
                continue
            images = [view[i] for view in demos.frames]
            tick = int(demos.frame_index[i]) if demos.frame_index is not None else n
            obs = Observation(images=images, instruction=demos.instructions[d],
                              proprio=demos.proprio[i], stamp=tick * TICK_S)
            steps.append(RebuiltStep(episode=d, observation=obs, images=images, values={}))
            if labels is not None:
                boxes = to_model_frame(demos.object_boxes[i], cfg.image_size, top, side)
                labels.append(box_patch_labels(boxes, cfg.image_size, grid, BOX_MIN_COVER))
    return steps, labels


def object_shares(outs: Sequence[StepOut], labels: Sequence[np.ndarray]
                  ) -> Optional[Dict[str, float]]:
    """Of the patches showing the part's object / target (per view, ``labels`` from
    ``demo_steps``), the share this configuration's selection kept, and the share a
    uniformly random subset of the same size keeps on average (``uniform``: kept / all
    patches, weighted as the object's patches are). None when the configuration reports no
    masks (unpruned)."""
    if not outs or not all(o.masks for o in outs):
        return None
    result: Dict[str, float] = {}
    for k, part in enumerate(PARTS):
        kept, shown, uniform = np.sum([token_maps.kept_counts(out.masks, step_labels, k + 1)
                                       for out, step_labels in zip(outs, labels)], axis=0)
        if shown:
            result[f"{part}_patches_kept"] = float(kept / shown)
            result[f"{part}_patches_uniform"] = float(uniform / shown)
    return result


def replay_demos(args: argparse.Namespace) -> Dict[str, Any]:
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    base = load_policy(args.policy, device=args.device, dtype=args.dtype)
    steps, labels = demo_steps(args.demos, base, args.stride, args.max_demos)
    if not steps:
        raise ValueError(f"{args.demos}: no frames to replay")
    defaults = dict(args.prune)
    configs = [Config(c.name, {**defaults, **c.changes})
               for c in configurations(args.configs, parse_sets(args.set))]
    outs: Dict[str, List[StepOut]] = {}
    for config in configs:
        budget: Any = 0
        if config.baseline and SPECPRUNE in outs:  # SpecPrune's kept tokens, step by step
            budget = [o.kept for o in outs[SPECPRUNE]]
        outs[config.name] = run_config(base, config, steps, budget)
        print(f"replayed {config.name}: {len(steps)} steps", flush=True)
    rows = [summarize(c.name, outs[c.name], outs[UNPRUNED], steps) for c in configs]
    for row in rows:
        shares = None if labels is None else object_shares(outs[row["name"]], labels)
        row.update(shares or {})
    result = {
        "note": OPEN_LOOP, "demos": demo_files(args.demos), "policy": args.policy,
        "checkpoint_hash": checkpoint_hash(args.policy), "stride": args.stride,
        "episodes": len({s.episode for s in steps}), "steps": len(steps),
        "prune_defaults": defaults, "budget_match": "step",
        "machine": machine(args.threads, str(base.device), str(base.dtype)),
        "configs": {r["name"]: r for r in rows},
    }
    if args.plot:
        plot(args.plot, rows)
    if args.overlay:
        overlay(args.overlay, steps, labels, outs, args.overlay_steps)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


def overlay(path: str, steps: Sequence[RebuiltStep], labels: Optional[List[np.ndarray]],
            outs: Dict[str, List[StepOut]], count: int) -> None:
    """token_maps.draw on ``count`` steps spread over the replay (ValueError without the
    demos' object boxes or a configuration that reports its kept tokens)."""
    shown = {name: out for name, out in outs.items() if out and all(o.masks for o in out)}
    if labels is None or not shown:
        raise ValueError("--overlay needs demos with obs/object_boxes and a pruned "
                         "configuration")
    picked = token_maps.sample_indices(len(steps), count)
    token_maps.draw(path, [steps[i].images for i in picked],
                    {name: [out[i].masks for i in picked] for name, out in shown.items()},
                    [labels[i] for i in picked], PARTS)


def format_table(result: Dict[str, Any]) -> str:
    lines = [result["note"], f"{result['steps']} steps in {result['episodes']} demos, "
             f"PruneConfig defaults {result['prune_defaults'] or 'none'}",
             f"{'configuration':44s} {'kept':>6s} {'fine':>5s} {'L1 vs unpruned':>14s} "
             f"{'object / target patches kept (uniform)':>40s}"]
    for r in result["configs"].values():
        shares = " / ".join(f"{r[f'{p}_patches_kept']:.2f} ({r[f'{p}_patches_uniform']:.2f})"
                            for p in PARTS if f"{p}_patches_kept" in r)
        lines.append(f"{r['name']:44s} {r['kept_visual_tokens_mean']:6.1f} "
                     f"{r['fine_mode_share']:5.0%} {r['action_l1_vs_unpruned']:14.4f} "
                     f"{shares:>40s}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="checkpoint folder")
    parser.add_argument("--demos", required=True,
                        help="demonstration file, folder of shards, or several, comma-separated")
    parser.add_argument("--configs", type=lambda s: [c for c in s.split(",") if c],
                        default=[UNPRUNED, SPECPRUNE, FASTV, RANDOM])
    parser.add_argument("--set", action="append", default=[],
                        help="prune.<field>=v1,v2,...: SpecPrune with each value (repeat: every "
                             "combination)")
    parser.add_argument("--prune", action="append", default=[], metavar="FIELD=VALUE",
                        help="a PruneConfig default under every configuration (repeatable)")
    parser.add_argument("--stride", type=int, default=2,
                        help="every k-th stored frame is a policy step (LIBERO shards: 2)")
    parser.add_argument("--max-demos", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's)")
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="")
    parser.add_argument("--overlay", default="",
                        help="PNG of the kept tokens per configuration on sampled steps")
    parser.add_argument("--overlay-steps", type=int, default=4)
    args = parser.parse_args(argv)
    if args.stride < 1 or args.overlay_steps < 1:
        parser.error("--stride and --overlay-steps must be >= 1")
    try:
        args.prune = parse_overrides(args.prune)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        result = replay_demos(args)
    except (DemoFileError, FileNotFoundError, ValueError) as exc:
        print(f"demo_replay: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
