"""``specprune-replay BAG``: the recorded observations through the policy in several
pruning configurations, open loop.

    specprune-replay bags/run1 --configs unpruned,specprune,fastv \
        --set prune.keep_scale=0.5,1,2 --json replay.json --plot replay.png

OPEN LOOP: every configuration sees exactly the observations the node stepped on (rebuilt
with the node's own code, ``bag_observations``); what it would have done next is never
seen. It measures agreement with the unpruned policy and with what the node published,
not task success.

Configurations: the names of ``specprune-eval`` (``configurations.CONFIGS``), ``recorded``
(the node's own ``prune.*`` values at each step, from the recording: it reproduces the
node's chunks), and one ``specprune[field=value,...]`` per combination of the ``--set``
values. FastV and random dropping keep SpecPrune's mean visual tokens of this replay
(random draws from the episode's index). Each configuration is reset where the node was
(its ~/reset marker) and steps through the episodes in order.

Per configuration: step and LLM latency (median, p95, ms), visual tokens kept, fine-mode
share, action L1 vs the unpruned policy (normalised chunk, as specprune-eval) and vs the
chunk the node published (raw units), the largest deviation from the published chunk,
and the steps where it deviates most from the unpruned policy (with the kept-patch overlay
of the worst one as a PNG). JSON + a plot.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from specprune import PruneConfig, SpecPrunePolicy, load_policy
from specprune.bench import BASELINE_POLICIES as BASELINES, RandomDropPolicy, machine
from specprune.model.folder_hash import checkpoint_hash
from specprune_ros.eval.configurations import CONFIGS
from specprune_ros.eval.eval_results import SPECPRUNE, UNPRUNED
from specprune_ros.node import parameters as params
from specprune_ros.node.bag_observations import Rebuilt, RebuiltStep, node_parameters, rebuild
from specprune_ros.node.bag_reader import BagError, read_bag
from specprune_ros.node.policy_messages import overlay_image

RECORDED = "recorded"
OPEN_LOOP = ("open loop: every configuration sees the recorded observations; this measures "
             "agreement with the unpruned policy and the recorded chunks, not task success")
WORST = 3  # steps listed per configuration


@dataclass
class Config:
    """One replayed configuration: PruneConfig changes, or None for the node's own."""

    name: str
    changes: Optional[Dict[str, Any]]

    @property
    def baseline(self) -> Optional[type]:
        """FastVPolicy / RandomDropPolicy for the baselines, else None."""
        return BASELINES.get(self.name)


@dataclass
class StepOut:
    step_ms: float
    llm_ms: float
    kept: int
    mode: str
    normalized: np.ndarray
    actions: np.ndarray
    masks: List[np.ndarray] = field(default_factory=list)


# ------------------------------------------------------------------------------ configurations
def parse_sets(items: Sequence[str]) -> List[Dict[str, Any]]:
    """``["prune.keep_scale=0.5,1,2", ...]`` -> one changes dict per combination; ValueError
    naming a field PruneConfig does not have or a value it refuses."""
    axes = []
    for item in items:
        name, _, values = item.partition("=")
        field_name = name.strip().removeprefix(params.PRUNE_PREFIX)
        if not values or not hasattr(PruneConfig(), field_name):
            raise ValueError(f"--set {item!r}: expected prune.<field>=v1,v2,... with a "
                             f"PruneConfig field")
        axes.append([(field_name, json.loads(v)) for v in values.split(",")])
    combos = [dict(c) for c in itertools.product(*axes)] if axes else []
    for changes in combos:
        PruneConfig().updated(**changes)  # ValueError naming the field and value
    return combos


def configurations(names: Sequence[str], sets: Sequence[Dict[str, Any]]) -> List[Config]:
    unknown = [n for n in names if n not in CONFIGS and n != RECORDED]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; known: "
                         f"{sorted(CONFIGS) + [RECORDED]}")
    out = [Config(UNPRUNED, dict(CONFIGS[UNPRUNED][0]))]  # the reference runs first
    out += [Config(n, None if n == RECORDED else dict(CONFIGS[n][0]))
            for n in names if n != UNPRUNED and n not in BASELINES]
    out += [Config(f"{SPECPRUNE}[{','.join(f'{k}={v}' for k, v in c.items())}]", c)
            for c in sets]
    out += [Config(n, dict(CONFIGS[n][0])) for n in BASELINES if n in names]
    return out


# ------------------------------------------------------------------------------ running
def run_config(base: SpecPrunePolicy, config: Config, steps: Sequence[RebuiltStep],
               budget: Union[int, Sequence[int]] = 0) -> List[StepOut]:
    """Every step in order, reset at each new episode, timed. A baseline keeps ``budget``
    visual tokens: one count, or one per step."""
    kind = config.baseline or SpecPrunePolicy
    prune = PruneConfig().updated(**(config.changes or {}))
    policy = kind(base.model, base.tokenizer, base.statistics, base.layout, prune,
                  str(base.device), base.dtype)
    per_step = budget if isinstance(budget, Sequence) else [budget] * len(steps)
    out: List[StepOut] = []
    episode = None
    for step, step_budget in zip(steps, per_step):
        if config.baseline and step_budget:
            policy.budget = step_budget
        if step.episode != episode:
            policy.reset()
            episode = step.episode
            if isinstance(policy, RandomDropPolicy):
                policy.episode_seed = episode
        if config.changes is None:
            policy.update_config(params.prune_config(step.values))
        start = time.perf_counter()
        chunk, stats = policy.step(step.observation)
        wall = (time.perf_counter() - start) * 1e3
        out.append(StepOut(wall, stats.llm_ms, stats.kept_visual_tokens, stats.mode,
                           chunk.normalized, chunk.actions, list(stats.kept_masks)))
    return out


def _pct(values: Sequence[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if len(values) else None


def summarize(name: str, outs: List[StepOut], reference: List[StepOut],
              steps: Sequence[RebuiltStep]) -> Dict[str, Any]:
    l1_ref = [float(np.abs(o.normalized - r.normalized).mean()) for o, r in zip(outs, reference)]
    vs_rec = [(float(np.abs(o.actions - s.recorded).mean()),
               float(np.abs(o.actions - s.recorded).max()))
              for o, s in zip(outs, steps) if s.recorded is not None]
    worst = sorted(range(len(outs)), key=lambda i: -l1_ref[i])[:WORST]
    return {
        "name": name, "steps": len(outs),
        "step_ms_median": _pct([o.step_ms for o in outs], 50),
        "step_ms_p95": _pct([o.step_ms for o in outs], 95),
        "llm_ms_median": _pct([o.llm_ms for o in outs], 50),
        "llm_ms_p95": _pct([o.llm_ms for o in outs], 95),
        "kept_visual_tokens_mean": float(np.mean([o.kept for o in outs])) if outs else None,
        "fine_mode_share": float(np.mean([o.mode == "fine" for o in outs])) if outs else None,
        "action_l1_vs_unpruned": float(np.mean(l1_ref)) if outs else None,
        "action_l1_vs_recorded": float(np.mean([v[0] for v in vs_rec])) if vs_rec else None,
        "max_abs_diff_vs_recorded": max((v[1] for v in vs_rec), default=None),
        "worst_steps": [{"step": i, "episode": steps[i].episode,
                         "stamp": steps[i].observation.stamp, "l1_vs_unpruned": l1_ref[i]}
                        for i in worst if l1_ref[i] > 0],
        "l1_vs_unpruned_per_step": l1_ref,
    }


def reproduction(outs: List[StepOut], steps: Sequence[RebuiltStep],
                 where: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Largest |replayed - published| over the steps the node ran with ``where``'s prune
    changes (every step for None)."""
    target = None if where is None else PruneConfig().updated(**where)
    diffs = [float(np.abs(o.actions - s.recorded).max()) for o, s in zip(outs, steps)
             if s.recorded is not None and (
                 target is None or params.prune_config(s.values) == target)]
    return {"steps_compared": len(diffs), "max_abs_diff": max(diffs, default=None)}


def save_overlay(path: str, step: RebuiltStep, out: StepOut) -> None:
    from PIL import Image as PILImage

    PILImage.fromarray(overlay_image(step.images, out.masks)).save(path)


def plot(path: str, rows: List[Dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].bar(names, [r["action_l1_vs_unpruned"] or 0 for r in rows])
    axes[0].set_ylabel("action L1 vs unpruned (normalised)")
    medians = [r["llm_ms_median"] or 0.0 for r in rows]
    above = [max(0.0, (r["llm_ms_p95"] or 0.0) - m) for r, m in zip(rows, medians)]
    axes[1].bar(names, medians, yerr=[[0.0] * len(rows), above])
    axes[1].set_ylabel("LLM ms (median, bar to p95)")
    for r in rows:
        axes[2].plot(r["l1_vs_unpruned_per_step"], label=r["name"], lw=1)
    axes[2].set_xlabel("replayed step")
    axes[2].set_ylabel("L1 vs unpruned")
    axes[2].legend(fontsize=7)
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=35, labelsize=7)
    fig.suptitle("specprune-replay (open loop: agreement, not success)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ main
def _model(args: argparse.Namespace, meta: Dict[str, Any], values: Dict[str, Any]
           ) -> Tuple[str, List[str]]:
    notes = []
    model = args.model or meta.get("model") or str(values.get("model") or "")
    if not model:
        raise BagError("the bag does not name the model (no recorder metadata): pass --model")
    recorded_hash = meta.get("model_hash")
    if recorded_hash and os.path.isdir(model) and checkpoint_hash(model) != recorded_hash:
        notes.append(f"model folder {model} changed since the recording "
                     f"({recorded_hash} then): not the policy that ran")
    return model, notes


def replay(args: argparse.Namespace) -> Dict[str, Any]:
    bag = read_bag(args.bag)
    meta = bag.metadata()
    values = node_parameters(bag)[0]
    model, notes = _model(args, meta, values)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    base = load_policy(model, device=args.device or values["device"],
                       dtype=args.dtype or values["dtype"],
                       layout=values["action_layout"] or None)
    rebuilt: Rebuilt = rebuild(bag, base.layout.proprio_dim, use_chunks=not args.every_frame)
    if not rebuilt.steps:
        raise BagError(f"bag {bag.path}: no observation could be rebuilt: "
                       + "; ".join(rebuilt.not_rebuilt[:5]))
    configs = configurations(args.configs, parse_sets(args.set))
    outs: Dict[str, List[StepOut]] = {}
    for config in configs:
        budget = 0
        if config.baseline and SPECPRUNE in outs:
            budget = max(1, int(round(np.mean([o.kept for o in outs[SPECPRUNE]]))))
        outs[config.name] = run_config(base, config, rebuilt.steps, budget)
        print(f"replayed {config.name}: {len(rebuilt.steps)} steps", flush=True)
    rows = [summarize(c.name, outs[c.name], outs[UNPRUNED], rebuilt.steps) for c in configs]
    result = {
        "note": OPEN_LOOP, "bag": bag.path, "model": model,
        "model_hash_recorded": meta.get("model_hash"), "parameters_from": rebuilt.parameters_from,
        "episodes": rebuilt.episodes, "steps": len(rebuilt.steps),
        "chunks_not_rebuilt": rebuilt.not_rebuilt, "bag_problems": bag.problems,
        "notes": notes, "machine": machine(args.threads, str(base.device), str(base.dtype)),
        "configs": {r["name"]: r for r in rows},
        "reproduces_node": {UNPRUNED: reproduction(outs[UNPRUNED], rebuilt.steps,
                                                   CONFIGS[UNPRUNED][0])},
    }
    if RECORDED in outs:
        result["reproduces_node"][RECORDED] = reproduction(outs[RECORDED], rebuilt.steps, None)
    _write_outputs(args, result, rows, rebuilt.steps, outs)
    return result


def _write_outputs(args: argparse.Namespace, result: Dict[str, Any], rows: List[Dict[str, Any]],
                   steps: Sequence[RebuiltStep], outs: Dict[str, List[StepOut]]) -> None:
    if args.overlays:
        os.makedirs(args.overlays, exist_ok=True)
        for row in rows:
            if row["worst_steps"]:
                i = row["worst_steps"][0]["step"]
                path = os.path.join(args.overlays, f"worst_{row['name']}.png")
                save_overlay(path, steps[i], outs[row["name"]][i])
                row["worst_overlay"] = path
    if args.plot:
        plot(args.plot, rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


def format_table(result: Dict[str, Any]) -> str:
    def num(v: Optional[float], fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    lines = [result["note"], f"{result['steps']} steps in {result['episodes']} episodes "
             f"from {result['bag']} (parameters from the {result['parameters_from']})",
             f"{'configuration':34s} {'step ms':>15s} {'LLM ms':>15s} {'kept':>6s} "
             f"{'fine':>5s} {'L1 vs unpruned':>14s} {'L1 vs recorded':>14s}"]
    for r in result["configs"].values():
        lines.append(
            f"{r['name']:34s} {num(r['step_ms_median'], '.1f'):>7s}/"
            f"{num(r['step_ms_p95'], '.1f'):<7s}"
            f" {num(r['llm_ms_median'], '.1f'):>7s}/{num(r['llm_ms_p95'], '.1f'):<7s}"
            f" {num(r['kept_visual_tokens_mean'], '.0f'):>6s} "
            f"{num(r['fine_mode_share'], '.0%'):>5s} {num(r['action_l1_vs_unpruned'], '.4f'):>14s}"
            f" {num(r['action_l1_vs_recorded'], '.2e'):>14s}")
    for name, rep in result["reproduces_node"].items():
        lines.append(f"{name} vs the node's own chunks: max |diff| "
                     f"{num(rep['max_abs_diff'], '.2e')} over {rep['steps_compared']} steps")
    lines += [f"problem: {p}" for p in result["bag_problems"] + result["notes"]]
    if result["chunks_not_rebuilt"]:
        lines.append(f"{len(result['chunks_not_rebuilt'])} recorded chunks whose observation "
                     f"was not rebuilt, first: {result['chunks_not_rebuilt'][0]}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="specprune-replay", description=__doc__.splitlines()[0])
    parser.add_argument("bag", help="rosbag2 directory (or .mcap file) of specprune-record")
    parser.add_argument("--configs", type=lambda s: [c for c in s.split(",") if c],
                        default=[UNPRUNED, SPECPRUNE, RECORDED])
    parser.add_argument("--set", action="append", default=[],
                        help="prune.<field>=v1,v2,...: SpecPrune with each value (repeat: every "
                             "combination)")
    parser.add_argument("--model", default="", help="checkpoint (default: the recorded one)")
    parser.add_argument("--device", default="", help="default: the node's")
    parser.add_argument("--dtype", default="", help="default: the node's")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's)")
    parser.add_argument("--every-frame", action="store_true",
                        help="step on every matched frame set, not the node's recorded steps")
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="")
    parser.add_argument("--overlays", default="",
                        help="folder for the kept-patch overlay of each worst step")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        result = replay(args)
    except (BagError, ValueError) as exc:
        print(f"specprune-replay: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
