"""Episodes as Ray tasks: 100+ paired seeds x every configuration in one command.

``specprune-eval --workers N`` splits the seeds into contiguous blocks and runs each block
(every configuration, seed-major, as the serial runner does) as one Ray task with its own
model and simulator, on this machine (``ray.init()`` with N CPUs) or on a running cluster
(``--ray-address``; the nodes need this package and its requirements installed). With
``--budget-match mean`` the baselines run in a second round with SpecPrune's mean kept
tokens over the whole first round, the rule the serial runner follows too (per step, each
block matches its own steps). Blocks are merged in seed order, so every episode record,
kept-token count, action deviation and hit rate equals the serial run's on the same seeds;
only the timings differ. Ray is optional: without it the serial path runs.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any, Dict, List, Sequence, Tuple

from specprune.bench import machine
from specprune_ros.eval.configurations import run_meta
from specprune_ros.eval.episodes import (EpisodeSpec, budget_of, hit_source_of, late_configs,
                                         run_episodes)
from specprune_ros.eval.eval_results import SPECPRUNE, ConfigRun, summarize

#: Environment every worker needs: the repository on the path, the offscreen renderer.
_WORKER_ENV = ("PYTHONPATH", "MUJOCO_GL", "PYOPENGL_PLATFORM", "PYTHONWARNINGS")


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def seed_blocks(seeds: Sequence[int], workers: int) -> List[List[int]]:
    """Contiguous blocks, about two per worker (a slow block does not idle the rest)."""
    size = max(1, math.ceil(len(seeds) / (2 * workers)))
    return [list(seeds[i:i + size]) for i in range(0, len(seeds), size)]


def _block(spec: EpisodeSpec, configs: Sequence[str], seeds: Sequence[int],
           budget: int, hit_source: str
           ) -> Tuple[Dict[str, ConfigRun], List[float], str, str]:
    return run_episodes(spec, configs, seeds, budget, lambda line: None, hit_source)


def _merge(parts: Sequence[Tuple[Dict[str, ConfigRun], List[float], str, str]],
           runs: Dict[str, ConfigRun], hits: List[float]) -> None:
    for block_runs, block_hits, _, _ in parts:
        for name, run in block_runs.items():
            merged = runs.setdefault(name, ConfigRun(name, dict(run.changes)))
            merged.changes.update(run.changes)
            merged.layers = run.layers
            merged.episodes += run.episodes
            merged.steps += run.steps
        hits += block_hits


def evaluate_parallel(args: argparse.Namespace, spec: EpisodeSpec) -> Dict[str, Any]:
    """The evaluation with ``args.workers`` Ray workers; the serial runner's JSON."""
    import ray

    env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
    init: Dict[str, Any] = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                            "logging_level": "warning"}
    if args.ray_address:
        init["address"] = args.ray_address
    else:
        init["num_cpus"] = args.workers * spec.threads  # each task asks for --threads CPUs
        # Ray starts its workers at nice 15: beside any other load (two CPU burners) they got
        # ~3 % of a core and one 2-episode test ran for many minutes; the serial runner
        # runs at the caller's priority, and so do these workers now
        init["_system_config"] = {"worker_niceness": 0}
    ray.init(**init)
    try:
        task = ray.remote(num_cpus=spec.threads)(_block)
        seeds = list(args.seeds)
        blocks = seed_blocks(seeds, args.workers)
        start = time.monotonic()
        runs: Dict[str, ConfigRun] = {}
        hits: List[float] = []
        late = late_configs(args.configs, args.budget_match, args.fastv_budget)
        first = [c for c in args.configs if c not in late]
        source = hit_source_of(args.configs)
        parts = ray.get([task.remote(spec, first, b, args.fastv_budget, source)
                         for b in blocks]) if first else []
        _merge(parts, runs, hits)
        if late:
            budget = budget_of(runs.get(SPECPRUNE), args.fastv_budget)
            more = ray.get([task.remote(spec, late, b, budget, source) for b in blocks])
            _merge(more, runs, hits)
            parts += more
        runs = {c: runs[c] for c in args.configs}
        device, dtype = parts[0][2], parts[0][3]
        host = machine(spec.threads, device, dtype)
        host["ray_workers"] = args.workers
        host["ray_address"] = args.ray_address or "local"
        meta = run_meta(args, seeds, time.monotonic() - start, host)
        return summarize(runs, meta, hits)
    finally:
        ray.shutdown()
