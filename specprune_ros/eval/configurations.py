"""The evaluated configurations (name -> PruneConfig changes) and the run metadata: the
pieces both the in-process runner (evaluate) and the ROS runner (eval_ros) use."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from typing import Any, Dict, List, Optional, Sequence

from specprune.model.checkpoint import checkpoint_hash, training_summary
from specprune.model.presets import PRESETS
from specprune_ros.eval.eval_results import FASTV, GRID, RANDOM, SPECPRUNE, UNPRUNED

#: First development seed of pick_color: its recorded demonstrations use seeds 0, 1, ... (a
#: few hundred), the grounding probe's held-out demos 200000 and up. Everything tried runs
#: here.
EVAL_SEED = 100_000
#: First development seed of the LIBERO and LIBERO-shaped suites: their recorders use seeds
#: up to 104 999 (LIBERO task 9's demos from 100000, the tabletop takeover demos 100000-
#: 101999, the shared-scene demos from 80000), the tabletop pipeline evaluates from 500000
#: and its probes from 600000.
SUITE_EVAL_SEED = 500_000
#: The claim's seeds, fixed before any claim run (issue #19): ``--claim`` runs episode i
#: on CLAIM_SEED + i, i < CLAIM_EPISODES_MAX; no development run may use them, and a claim
#: JSON is never overwritten. For LIBERO the claim set is the benchmark's fixed initial
#: states instead (50 per task), which no demonstration starts from.
CLAIM_SEED = 900_000
CLAIM_EPISODES_MAX = 1_000
CLAIM_SEEDS = range(CLAIM_SEED, CLAIM_SEED + CLAIM_EPISODES_MAX)

_NO_LOCAL = {"local_k_primary_coarse": 0, "local_k_wrist_coarse": 0,
             "local_k_primary_fine": 0, "local_k_wrist_fine": 0}
#: name -> (PruneConfig changes from the defaults, what it measures). The baselines (FastV,
#: random) ignore their changes (each has its own hook) and keep SpecPrune's visual budget
#: (episodes.py: per step by default).
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
    FASTV: ({"enabled": False}, "FastV at layer 2 with SpecPrune's visual budget"),
    RANDOM: ({"enabled": False}, "a uniformly random subset of SpecPrune's visual budget at "
                                 "layer 2, seeded by episode and step: the floor"),
    GRID: ({"enabled": False}, "SpecPrune's visual budget at layer 2 spread over each view at an "
                               "even stride: no scores, the whole scene coarsely"),
}
#: configurations the policy node cannot run (no FastV / random mode there): in process only
IN_PROCESS_ONLY = (FASTV, RANDOM, GRID)


def model_hash(policy: str) -> Optional[str]:
    """What a result JSON records as the policy's ``checkpoint_hash``: the content hash of
    a checkpoint folder, None for a preset (its random weights follow from its name)."""
    return None if policy in PRESETS else checkpoint_hash(policy)


def code_revision() -> Optional[str]:
    """The checkout's commit, "+dirty" when tracked files differ from it; None outside a
    git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def training_demos(policy: str) -> Optional[List[Any]]:
    """The demo files (name, content digest) a checkpoint folder was trained on, from its
    training_summary.json; None for a preset or a folder without one."""
    summary = None if policy in PRESETS else training_summary(policy)
    files = None if summary is None else summary.get("demo_files")
    return None if files is None else [list(entry) for entry in files]


def attempt_info(host: Dict[str, Any]) -> Dict[str, Any]:
    """Where one attempt of a run ran: the machine and the code revision."""
    return {"machine": host, "code_revision": code_revision()}


def run_meta(args: argparse.Namespace, seeds: Sequence[int], wall_s: float,
             host: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON's top-level record of the run: what ran (``policy`` as named, its
    ``checkpoint_hash`` and the ``training_demos`` it was trained on), on which seeds, the
    ``code_revision``, and ``machine`` (CPU model, torch's CPU capability, threads,
    versions)."""
    return {"task": args.task, "policy": args.policy,
            "checkpoint_hash": model_hash(args.policy),
            "training_demos": training_demos(args.policy), "code_revision": code_revision(),
            "via": args.via,
            "claim": bool(getattr(args, "claim", False)),
            "seed_set": "claim" if getattr(args, "claim", False) else "development",
            "episodes": args.episodes, "horizon": args.horizon, "seeds": list(seeds),
            "budget_match": getattr(args, "budget_match", None),
            "prune_defaults": dict(getattr(args, "prune", ()) or ()),
            "hit_rate_k": args.hit_k, "l1_every": args.l1_every, "wall_s": wall_s,
            "machine": host}


def note_attempts(meta: Dict[str, Any], journal: Any) -> None:
    """A resumed run's ``attempts`` and each one's ``attempt_info`` (machine, code
    revision), when more than one attempt ran episodes."""
    if journal is not None and journal.attempts > 1:
        meta["attempts"] = journal.attempts
        meta["attempt_info"] = dict(sorted(journal.infos.items()))


def episode_seeds(claim: bool, first: Optional[int], episodes: int,
                  default_first: int = EVAL_SEED) -> List[int]:
    """The seeds of a run: the claim range's first ``episodes``, or ``first``
    (``default_first`` when None) and on; ValueError when a claim asks for a seed or too many
    episodes, or a development run reaches into the claim range."""
    if claim:
        if first is not None:
            raise ValueError("--claim runs the fixed claim seeds; --seed is not allowed")
        if episodes > CLAIM_EPISODES_MAX:
            raise ValueError(f"the claim range holds {CLAIM_EPISODES_MAX} seeds, "
                             f"{episodes} episodes asked")
        return list(CLAIM_SEEDS[:episodes])
    start = default_first if first is None else first
    seeds = list(range(start, start + episodes))
    if seeds[0] < CLAIM_SEEDS.stop and seeds[-1] >= CLAIM_SEEDS.start:
        raise ValueError(f"seeds {seeds[0]}..{seeds[-1]} reach into the claim range "
                         f"{CLAIM_SEEDS.start}..{CLAIM_SEEDS.stop - 1} (only --claim runs "
                         "there)")
    return seeds


def write_result(path: str, result: Dict[str, Any], claim: bool) -> None:
    """Write the JSON whole or not at all: into a temporary file first, then moved into
    place (a claim's only if ``path`` still does not exist: FileExistsError). A kill while
    writing leaves no half-written result that a later step could take for a finished one."""
    part = f"{path}.part{os.getpid()}"
    with open(part, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    try:
        if claim:
            os.link(part, path)  # fails when path exists: never overwritten
        else:
            os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.unlink(part)


def check_output(path: Optional[str], claim: bool) -> None:
    """ValueError when writing ``path`` would overwrite a claim's record, or when a claim
    run would overwrite anything."""
    if not path or not os.path.exists(path):
        return
    if claim:
        raise ValueError(f"{path} exists: a claim run never overwrites a file")
    try:
        with open(path, encoding="utf-8") as f:
            held = json.load(f)
    except (OSError, ValueError):
        return
    if isinstance(held, dict) and held.get("claim"):
        raise ValueError(f"{path} holds a claim run's results: it is never overwritten")
