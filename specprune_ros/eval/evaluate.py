"""``specprune-eval``: closed-loop task success with and without pruning, on paired seeds.

Runs N episodes of the simulated task per configuration -- ``unpruned``, ``specprune``
(defaults), one ablation per SpecPrune component and ``fastv`` at SpecPrune's visual
budget -- where episode i uses seed + i in EVERY configuration (same cube placement and
instruction), and writes JSON + a table (+ a PNG with ``--plot``)::

    specprune-eval --episodes 200 --json eval.json --plot eval.png
    python -m specprune_ros.eval.evaluate --policy tiny --episodes 2 --horizon 20 \\
        --json /tmp/e.json

``--via direct`` (default) runs in process (specprune_ros/eval/episodes.py). Episodes are
run seed-major (every configuration on seed s, then on s + 1...) so that slow drifts of the
machine's load hit all configurations alike, FastV last at SpecPrune's mean budget. One
model is loaded; every configuration shares its weights. ``--workers N`` runs blocks of
seeds as Ray tasks with the same results (specprune_ros/eval/parallel.py). ``--via ros``:
see specprune_ros/eval/eval_ros.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from specprune.bench import FastVPolicy, machine
from specprune.model.presets import PRESETS
from specprune_ros.eval.configurations import CONFIGS, EVAL_SEED, run_meta
from specprune_ros.eval.episodes import EpisodeSpec, run_episodes
from specprune_ros.eval.eval_results import format_table, plot, summarize
from specprune_ros.eval.parallel import evaluate_parallel, ray_available
from specprune_ros.node import package_data

DEFAULT_POLICY = package_data.SHIPPED_CHECKPOINT  # found under the share dir / source tree


# ------------------------------------------------------------------------------ the CLI
def resolve_policy(path: str) -> str:
    """A preset name, or a checkpoint folder relative to the working directory or to the
    package's data (its installed share directory, else the source tree: the shipped
    checkpoint is ``checkpoints/pick_color`` there); ValueError when it is neither."""
    if path in PRESETS or os.path.isdir(path):
        return path
    in_package = package_data.data_path(path)
    if os.path.isdir(in_package):
        return in_package
    raise ValueError(f"policy {path!r} is neither a checkpoint folder nor a preset "
                     f"({', '.join(PRESETS)})")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="configurations: " + "; ".join(f"{k}: {v[1]}" for k, v in CONFIGS.items()))
    parser.add_argument("--episodes", type=int, default=20, help="episodes per configuration")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a PNG of success and latency here")
    parser.add_argument("--policy", default=DEFAULT_POLICY,
                        help="checkpoint folder or preset (default: the shipped checkpoint)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--via", choices=("direct", "ros"), default="direct")
    parser.add_argument("--task", default="pick_color")
    parser.add_argument("--horizon", type=int, default=150, help="control ticks per episode")
    parser.add_argument("--seed", type=int, default=EVAL_SEED,
                        help="episode i uses seed + i (default: past the demos' seeds 0, 1, "
                             "..., so no evaluated placement was demonstrated)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU), float32, ...")
    parser.add_argument("--l1-every", type=int, default=1,
                        help="run the unpruned model on every k-th step's observation for "
                             "action_l1_vs_unpruned (0: never; it doubles a step's cost)")
    parser.add_argument("--hit-every", type=int, default=4,
                        help="hit rate on every k-th observation of the unpruned episodes "
                             "(0: never)")
    parser.add_argument("--hit-k", type=int, default=20, help="top-k per view of the hit rate")
    parser.add_argument("--fastv-budget", type=int, default=0,
                        help="FastV's visual tokens (0: SpecPrune's mean kept over this run, "
                             "or %d without specprune)" % FastVPolicy.budget)
    parser.add_argument("--workers", type=int, default=1,
                        help="episodes run as Ray tasks on this many workers (1: serial, "
                             "in this process; needs ray); each uses --threads")
    parser.add_argument("--ray-address", default="",
                        help="a running Ray cluster (e.g. ray://head:10001 or auto) instead of "
                             "a local one; its nodes need this package installed")
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    if args.episodes < 1 or args.horizon < 1 or args.seed < 0:
        parser.error("--episodes and --horizon must be >= 1, --seed >= 0")
    counts = (args.l1_every, args.hit_every, args.fastv_budget)
    if min(counts) < 0 or min(args.hit_k, args.threads, args.workers) < 1:
        parser.error("--l1-every / --hit-every / --fastv-budget must be >= 0, "
                     "--hit-k / --threads / --workers >= 1")
    if (args.workers > 1 or args.ray_address) and args.via == "ros":
        parser.error("--workers / --ray-address run episodes in process (--via direct)")
    if (args.workers > 1 or args.ray_address) and not ray_available():
        parser.error("--workers > 1 needs ray (pip install ray); without it the serial "
                     "runner is the default")
    try:
        args.policy = resolve_policy(args.policy)
    except ValueError as exc:
        parser.error(str(exc))
    # SpecPrune runs before FastV (FastV takes its budget)
    args.configs = sorted(args.configs, key=list(CONFIGS).index)
    return args


def episode_spec(args: argparse.Namespace) -> EpisodeSpec:
    return EpisodeSpec(policy=args.policy, task=args.task, horizon=args.horizon,
                       threads=args.threads, device=args.device, dtype=args.dtype,
                       l1_every=args.l1_every, hit_every=args.hit_every, hit_k=args.hit_k,
                       first_seed=args.seed)


def evaluate_direct(args: argparse.Namespace) -> Dict[str, Any]:
    """In process: serially, or with ``--workers`` > 1 as Ray tasks (same results)."""
    spec = episode_spec(args)
    if args.workers > 1 or args.ray_address:
        return evaluate_parallel(args, spec)
    seeds = [args.seed + i for i in range(args.episodes)]
    start = time.monotonic()
    runs, hits, device, dtype = run_episodes(spec, args.configs, seeds, args.fastv_budget)
    meta = run_meta(args, seeds, time.monotonic() - start, machine(args.threads, device, dtype))
    return summarize(runs, meta, hits)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.via == "ros":
        from specprune_ros.eval.eval_ros import evaluate_ros  # rclpy only when asked for
        result = evaluate_ros(args)
    else:
        result = evaluate_direct(args)
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
