"""``specprune-eval``: closed-loop task success with and without pruning, on paired seeds.

Runs N episodes of the simulated task per configuration -- ``unpruned``, ``specprune``
(defaults), one ablation per SpecPrune component, ``fastv`` and ``random`` at SpecPrune's
visual budget -- where episode i uses seed + i in EVERY configuration (same cube placement
and instruction), and writes JSON + a table (+ a PNG with ``--plot``)::

    specprune-eval --episodes 200 --json eval.json --plot eval.png
    python -m specprune_ros.eval.evaluate --policy tiny --episodes 2 --horizon 20 \\
        --json /tmp/e.json

Seeds: development runs start at EVAL_SEED, on the LIBERO and LIBERO-shaped suites at
SUITE_EVAL_SEED (``--seed``); ``--claim`` runs the claim range
fixed in configurations.py (CLAIM_SEED and on), records ``claim: true`` and refuses to
overwrite any file; no development run may reach into that range, and no run overwrites a
claim's JSON.

``--via direct`` (default) runs in process (specprune_ros/eval/episodes.py). Episodes are
run seed-major (every configuration on seed s, then on s + 1...) so that slow drifts of the
machine's load hit all configurations alike; FastV and random keep SpecPrune's visual
budget per step (``--budget-match step``: SpecPrune's selection on the same observation),
or its mean over the run (``mean``: they run last), or ``--baseline-budget N``. One
model is loaded; every configuration shares its weights. ``--workers N`` runs blocks of
seeds as Ray tasks with the same results (specprune_ros/eval/parallel.py). ``--via ros``:
see specprune_ros/eval/eval_ros.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

from specprune.config import parse_overrides
from specprune.bench import FastVPolicy, machine
from specprune.model.presets import PRESETS
from specprune_ros.eval.configurations import (CLAIM_SEED, CONFIGS, EVAL_SEED,
                                               SUITE_EVAL_SEED, attempt_info, check_output,
                                               episode_seeds, note_attempts, run_meta,
                                               write_result)
from specprune_ros.eval.episode_env import SIM_HORIZON, default_horizon
from specprune_ros.eval.episodes import (BUDGET_MATCHES, BUDGET_STEP, EpisodeSpec, Resume,
                                         SimulatorFailure, late_configs, run_episodes)
from specprune_ros.eval.eval_journal import check_journal, journal_key
from specprune_ros.eval.eval_results import format_table, plot, summarize
from specprune_ros.eval.parallel import evaluate_parallel, ray_available
from specprune_ros.node import package_data
from specprune_ros.sim.libero_arm import libero_tasks
from specprune_ros.sim.tabletop_suites import tabletop_task
from specprune_ros.sim.libero_protocol import GRIPPER_CONVENTIONS, INIT_STATES_PER_TASK

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
    parser.add_argument("--task", default="pick_color",
                        help="pick_color, lift, or a LIBERO task <suite>:<index> (e.g. "
                             "libero_spatial:0; needs .venv-libero) or every task of a suite "
                             "<suite>:all (episode i on task i %% 10): the protocol's 10 no-op "
                             "ticks, development seeds through LIBERO's sampler; --claim the "
                             "benchmark's fixed initial states, 50 per task in its order")
    parser.add_argument("--executor-limits", choices=("sim", "robot"), default="sim",
                        help="--via ros: the executor's envelope: sim (executor_sim.yaml opens "
                        "speed and acceleration to the simulator's OSC range) or robot "
                        "(config/executor.yaml as on a real arm, e-stop signal waived)")
    parser.add_argument("--gripper-convention", choices=GRIPPER_CONVENTIONS, default="env",
                        help="LIBERO tasks: the policy's gripper value is env (-1 open .. 1 "
                             "close: our checkpoints) or openvla_oft (0 close .. 1 open: "
                             "OpenVLA-OFT's released LIBERO checkpoints, converted as its "
                             "process_action does)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="control ticks per episode (default %d; a LIBERO task: its "
                             "suite's limit, 220 / 280 / 300 / 520)" % SIM_HORIZON)
    parser.add_argument("--resume", metavar="FILE",
                        help="record each finished episode in FILE (JSON lines) and, "
                             "started again with the same FILE and run, run only the "
                             "episodes not in it (over ROS, or in process without Ray)")
    parser.add_argument("--seed", type=int, default=None,
                        help="episode i uses seed + i (default %d for pick_color: past its "
                             "demos' seeds 0, 1, ...; %d for the LIBERO and LIBERO-shaped "
                             "suites, past their recorders' seeds: no evaluated placement was "
                             "demonstrated)" % (EVAL_SEED, SUITE_EVAL_SEED))
    parser.add_argument("--claim", action="store_true",
                        help="the claim run: seeds %d + i (fixed in the code), 'claim: true' "
                             "in the JSON, which must not exist yet" % CLAIM_SEED)
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
    parser.add_argument("--budget-match", choices=BUDGET_MATCHES, default=BUDGET_STEP,
                        help="FastV's and random's visual budget: per step, what SpecPrune "
                             "keeps on the same observation (untimed shadow selection); "
                             "compute: per step, SpecPrune's mean visual tokens over the "
                             "layers from the baseline's drop layer on (the same token-"
                             "layers); or SpecPrune's mean kept over this run (or %d without "
                             "specprune)" % FastVPolicy.budget)
    parser.add_argument("--baseline-budget", "--fastv-budget", dest="fastv_budget", type=int,
                        default=0, help="a fixed visual budget for FastV and random instead")
    parser.add_argument("--prune", action="append", default=[], metavar="FIELD=VALUE",
                        help="a PruneConfig default under every configuration (repeatable), "
                             "e.g. layer_depth=32")
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
    try:
        args.horizon = args.horizon if args.horizon is not None else default_horizon(args.task)
    except ValueError as exc:
        parser.error(f"--task: {exc}")
    if args.episodes < 1 or args.horizon < 1 or (args.seed or 0) < 0:
        parser.error("--episodes and --horizon must be >= 1, --seed >= 0")
    counts = (args.l1_every, args.hit_every, args.fastv_budget)
    if min(counts) < 0 or min(args.hit_k, args.threads, args.workers) < 1:
        parser.error("--l1-every / --hit-every / --fastv-budget must be >= 0, "
                     "--hit-k / --threads / --workers >= 1")
    if (args.workers > 1 or args.ray_address) and args.via == "ros":
        parser.error("--workers / --ray-address run episodes in process (--via direct)")
    if args.resume and (args.workers > 1 or args.ray_address):
        parser.error("--resume journals the serial runner's episodes; Ray workers "
                     "(--workers / --ray-address) run without one")
    if (args.workers > 1 or args.ray_address) and not ray_available():
        parser.error("--workers > 1 needs ray (pip install ray); without it the serial "
                     "runner is the default")
    try:
        args.policy = resolve_policy(args.policy)
        suite = libero_tasks(args.task) is not None or tabletop_task(args.task) is not None
        args.seeds = episode_seeds(args.claim, args.seed, args.episodes,
                                   SUITE_EVAL_SEED if suite else EVAL_SEED)
        args.seed = args.seeds[0]
        check_output(args.json, args.claim)
        args.prune = parse_overrides(args.prune)
    except ValueError as exc:
        parser.error(str(exc))
    if args.claim and not args.json:
        parser.error("--claim needs --json: a claim run is recorded")
    libero = libero_tasks(args.task)  # parsed above (default_horizon)
    if args.gripper_convention != "env" and not libero:
        parser.error("--gripper-convention openvla_oft is for LIBERO tasks")
    if libero and args.via == "ros" and len(libero[1]) > 1:
        parser.error("--via ros runs one LIBERO task per run (<suite>:<index>): the bridge "
                     "builds one task")
    if args.claim and libero and args.episodes > INIT_STATES_PER_TASK * len(libero[1]):
        parser.error(f"--claim on LIBERO runs the {INIT_STATES_PER_TASK} fixed initial states "
                     f"of each task: --episodes {args.episodes} is too many")
    # SpecPrune runs before the baselines (they take its budget)
    args.configs = sorted(args.configs, key=list(CONFIGS).index)
    # the key hashes the checkpoint: computed once, here, for the check and the run
    args.journal_key = journal_key(args) if args.resume else None
    try:
        if args.resume:
            check_journal(args.resume, args.journal_key)
    except ValueError as exc:
        parser.error(f"--resume: {exc}")
    return args


def episode_spec(args: argparse.Namespace) -> EpisodeSpec:
    return EpisodeSpec(policy=args.policy, task=args.task, horizon=args.horizon,
                       threads=args.threads, device=args.device, dtype=args.dtype,
                       l1_every=args.l1_every, hit_every=args.hit_every, hit_k=args.hit_k,
                       first_seed=args.seed, budget_match=args.budget_match,
                       prune_defaults=args.prune, claim=args.claim,
                       gripper_convention=args.gripper_convention)


def evaluate_direct(args: argparse.Namespace) -> Dict[str, Any]:
    """In process: serially, or with ``--workers`` > 1 as Ray tasks (same results)."""
    spec = episode_spec(args)
    if args.workers > 1 or args.ray_address:
        return evaluate_parallel(args, spec)
    seeds = args.seeds
    start = time.monotonic()
    late = late_configs(args.configs, args.budget_match, args.fastv_budget)
    resume = (Resume(args.resume, args.journal_key,
                     info=attempt_info(machine(args.threads, args.device, args.dtype)))
              if args.resume else None)
    runs, hits, device, dtype = run_episodes(spec, args.configs, seeds, args.fastv_budget,
                                             late=late, resume=resume)
    wall_s = time.monotonic() - start
    journal = resume.journal if resume is not None else None
    if journal is not None:  # every attempt's episodes: their hit rates and wall time
        hits, wall_s = journal.hit_rates, journal.wall_s
    meta = run_meta(args, seeds, wall_s, machine(args.threads, device, dtype))
    note_attempts(meta, journal)
    return summarize(runs, meta, hits)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.via == "ros":
        from specprune_ros.eval.eval_ros import evaluate_ros  # rclpy only when asked for
        result = evaluate_ros(args)
    else:
        try:
            result = evaluate_direct(args)
        except SimulatorFailure as exc:
            again = (" the finished episodes are journalled: run the same command again"
                     if args.resume else " rerun it (with --resume and --json, the finished "
                     "episodes would have been kept)")
            print(f"specprune-eval: the simulator failed, not the policy ({exc}); no result "
                  f"written,{again}", file=sys.stderr)
            return 3
    print(format_table(result))
    if args.json:
        write_result(args.json, result, args.claim)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
