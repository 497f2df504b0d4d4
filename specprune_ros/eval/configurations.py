"""The evaluated configurations (name -> PruneConfig changes) and the run metadata: the
pieces both the in-process runner (evaluate) and the ROS runner (eval_ros) use."""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Sequence

from specprune.model.checkpoint import checkpoint_hash
from specprune.model.presets import PRESETS
from specprune_ros.eval.eval_results import FASTV, SPECPRUNE, UNPRUNED

#: First evaluation seed: the recorded demonstrations use seeds 0, 1, ... (a few hundred).
EVAL_SEED = 100_000

_NO_LOCAL = {"local_k_primary_coarse": 0, "local_k_wrist_coarse": 0,
             "local_k_primary_fine": 0, "local_k_wrist_fine": 0}
#: name -> (PruneConfig changes from the defaults, what it measures). FastV ignores its
#: changes (the baseline has its own hook) and keeps SpecPrune's mean visual budget.
CONFIGS: Dict[str, tuple] = {
    UNPRUNED: ({"enabled": False}, "no pruning: every token, SDPA (the fastest unpruned path)"),
    SPECPRUNE: ({}, "SpecPrune with its defaults"),
    "no_global": ({"global_k": 0}, "without V_global (previous step's top-k)"),
    "no_dynamic": ({"dynamic_k": 0}, "without V_dynamic (frame comparison)"),
    "no_local": (_NO_LOCAL, "without V_local (layers 0/1 top-K, coarse and fine)"),
    "no_action_aware": ({"controller_enabled": False},
                        "controller off: always coarse mode (the cheaper K)"),
    "no_layer_pruning": ({"layer_prune_enabled": False},
                         "without dynamic layer pruning at layers 5/10/15/20"),
    FASTV: ({"enabled": False}, "FastV at layer 2 with SpecPrune's mean visual budget"),
}


def model_hash(policy: str) -> Optional[str]:
    """What a result JSON records as the policy's ``checkpoint_hash``: the content hash of
    a checkpoint folder, None for a preset (its random weights follow from its name)."""
    return None if policy in PRESETS else checkpoint_hash(policy)


def run_meta(args: argparse.Namespace, seeds: Sequence[int], wall_s: float,
             host: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON's top-level record of the run: what ran (``policy`` as named and its
    ``checkpoint_hash``), on which seeds, and ``machine`` (CPU model, torch's CPU
    capability, threads, versions)."""
    return {"task": args.task, "policy": args.policy,
            "checkpoint_hash": model_hash(args.policy), "via": args.via,
            "episodes": args.episodes, "horizon": args.horizon, "seeds": list(seeds),
            "hit_rate_k": args.hit_k, "l1_every": args.l1_every, "wall_s": wall_s,
            "machine": host}
