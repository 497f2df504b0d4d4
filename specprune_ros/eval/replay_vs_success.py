"""Does a low replay L1 predict keeping success? Open-loop replay agreement against
closed-loop success, one point per pruning setting (issue #20)::

    python -m specprune_ros.eval.replay_vs_success --bag runs/bags/demo --work runs/rvs \
        --json docs/replay_vs_success.json --plot docs/replay_vs_success.png

Per setting (``SETTINGS``: SpecPrune at keep_scale 0.25 / 0.5 / 1 / 2, without layer
pruning, FastV and random dropping at SpecPrune's budget):

- x: ``specprune-replay``'s action L1 vs the unpruned policy (normalised chunk, mean over
  the steps) on the recorded simulator bag ``--bag`` (the main job's: development seeds);
- y: closed-loop success of the same setting in process (``specprune-eval --via direct``,
  ``--episodes`` paired development seeds, the default first seed), its Wilson interval,
  and the paired difference to unpruned on the same seeds (Newcombe's interval).

The evaluations and the replay are written under ``--work`` and reused when there (delete
them to measure again): ``eval_main.json`` (unpruned, specprune, no_layer_pruning, fastv,
random in one run), ``eval_keep_scale_<v>.json`` (specprune with ``--prune keep_scale=v``)
and ``replay.json``. The in-process evaluation's own closed-loop L1 (the pruned policy vs
the unpruned one on the pruned policy's observations, every ``--l1-every``-th step) is
reported beside the replay's. With 20 episodes a success interval spans about +-0.2: the
study can show a large effect only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from scipy.stats import spearmanr

from specprune_ros.eval.eval_stats import paired_comparison, wilson_interval

UNPRUNED = "unpruned"
MAIN_RUN = "main"
MAIN_CONFIGS = ("unpruned", "specprune", "no_layer_pruning", "fastv", "random")
KEEP_SCALES = (0.25, 0.5, 2)  # besides the default 1 (the main run's specprune)


@dataclass(frozen=True)
class Setting:
    """One pruning setting: where its success and its replay L1 are found."""

    label: str
    run: str  # the evaluation run (MAIN_RUN or keep_scale_<v>)
    config: str  # its name in that run's JSON
    replay: str  # its name in the replay JSON
    prune: Dict[str, Any] = field(default_factory=dict)


def _keep_scale(value: float) -> Setting:
    text = json.dumps(value)
    return Setting(f"specprune keep_scale {text}", f"keep_scale_{text}", "specprune",
                   f"specprune[keep_scale={value}]", {"keep_scale": value})


SETTINGS: Sequence[Setting] = (
    _keep_scale(0.25), _keep_scale(0.5),
    Setting("specprune keep_scale 1", MAIN_RUN, "specprune", "specprune"),
    _keep_scale(2),
    Setting("no_layer_pruning", MAIN_RUN, "no_layer_pruning", "no_layer_pruning"),
    Setting("fastv", MAIN_RUN, "fastv", "fastv"),
    Setting("random", MAIN_RUN, "random", "random"),
)


# ------------------------------------------------------------------------------ measuring
def eval_command(run: str, args: argparse.Namespace, out: str) -> List[str]:
    """The ``specprune-eval --via direct`` command of one evaluation run."""
    cmd = [sys.executable, "-m", "specprune_ros.eval.evaluate", "--via", "direct",
           "--episodes", str(args.episodes), "--threads", str(args.threads),
           "--l1-every", str(args.l1_every), "--hit-every", "0", "--json", out]
    if run == MAIN_RUN:
        return cmd + ["--configs", ",".join(MAIN_CONFIGS)]
    setting = next(s for s in SETTINGS if s.run == run)
    return cmd + ["--configs", setting.config] + [
        f"--prune={k}={json.dumps(v)}" for k, v in setting.prune.items()]


def replay_command(args: argparse.Namespace, out: str) -> List[str]:
    scales = ",".join(json.dumps(v) for v in KEEP_SCALES)
    return [sys.executable, "-m", "specprune_ros.eval.replay", args.bag,
            "--configs", ",".join(MAIN_CONFIGS + ("recorded",)),  # + the node's own chunks
            "--set", f"prune.keep_scale={scales}",
            "--threads", str(args.threads), "--json", out]


def measured(path: str, command: List[str]) -> Dict[str, Any]:
    """The JSON at ``path``, measured with ``command`` first when it is not there."""
    if not os.path.exists(path):
        print("running: " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------------ the study
def successes(run: Dict[str, Any], config: str) -> Dict[int, bool]:
    return {e["seed"]: bool(e["success"]) for e in run["configs"][config]["per_episode"]}


def point(setting: Setting, runs: Dict[str, Dict[str, Any]], replayed: Dict[str, Any]
          ) -> Dict[str, Any]:
    """One setting's replay L1, success and paired difference to unpruned."""
    base = successes(runs[MAIN_RUN], UNPRUNED)
    mine = successes(runs[setting.run], setting.config)
    seeds = sorted(set(base) & set(mine))
    ok = sum(mine[s] for s in seeds)
    row = replayed["configs"][setting.replay]
    return {
        "setting": setting.label, "replay_config": setting.replay,
        "replay_l1_vs_unpruned": row["action_l1_vs_unpruned"],
        "replay_kept_visual_tokens_mean": row["kept_visual_tokens_mean"],
        "closed_loop_l1_vs_unpruned": runs[setting.run]["configs"][setting.config].get(
            "action_l1_vs_unpruned"),
        "episodes": len(seeds), "successes": ok,
        "success_rate": ok / len(seeds) if seeds else None,
        "success_ci95": list(wilson_interval(ok, len(seeds))),
        "vs_unpruned": paired_comparison([mine[s] for s in seeds], [base[s] for s in seeds]),
    }


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation (scipy's, average ranks for ties); None when undefined
    (fewer than three points, or a constant side, where scipy would warn and give nan)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def study(runs: Dict[str, Dict[str, Any]], replayed: Dict[str, Any],
          meta: Dict[str, Any]) -> Dict[str, Any]:
    points = [point(s, runs, replayed) for s in SETTINGS]
    base = successes(runs[MAIN_RUN], UNPRUNED)
    l1 = [p["replay_l1_vs_unpruned"] for p in points]
    return dict(meta, note=(
        "x: open-loop replay agreement on the recorded bag; y: closed-loop success in "
        "process on paired development seeds. One point per setting; with this many "
        "episodes the intervals are wide."),
        unpruned={"episodes": len(base), "successes": sum(base.values()),
                  "success_ci95": list(wilson_interval(sum(base.values()), len(base)))},
        points=points,
        spearman_replay_l1_vs_success=spearman(l1, [p["success_rate"] for p in points]),
        spearman_replay_l1_vs_paired_difference=spearman(
            l1, [p["vs_unpruned"]["difference"] for p in points]),
        spearman_replay_l1_vs_closed_loop_l1=spearman(
            l1, [p["closed_loop_l1_vs_unpruned"] or 0.0 for p in points]))


# ------------------------------------------------------------------------------ output
def plot(result: Dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    x = [p["replay_l1_vs_unpruned"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = (("success_rate", "success_ci95", "closed-loop success (Wilson 95 %)"),
              ("difference", "difference_ci95",
               "paired success difference vs unpruned\n(Newcombe 95 %)"))
    for ax, (key, ci, label) in zip(axes, panels):
        ys = [p[key] if key in p else p["vs_unpruned"][key] for p in points]
        cis = [p[ci] if ci in p else p["vs_unpruned"][ci] for p in points]
        ax.errorbar(x, ys, yerr=[[y - c[0] for y, c in zip(ys, cis)],
                                 [c[1] - y for y, c in zip(ys, cis)]],
                    fmt="o", capsize=3)
        labels: Dict[tuple, List[str]] = {}  # settings on the same spot share one label
        for xi, yi, p in zip(x, ys, points):
            labels.setdefault((round(xi, 3), round(yi, 3)), []).append(
                p["setting"].replace("specprune ", ""))
        for (xi, yi), names in labels.items():
            ax.annotate(" / ".join(names), (xi, yi), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xlabel("replay action L1 vs unpruned (open loop, normalised)")
        ax.set_ylabel(label)
    base = result["unpruned"]
    axes[0].axhline(base["successes"] / base["episodes"], ls="--", c="grey",
                    label=f"unpruned {base['successes']}/{base['episodes']}")
    axes[0].legend(fontsize=8)
    axes[1].axhline(0.0, ls="--", c="grey")
    fig.suptitle(f"replay agreement vs closed-loop success ({base['episodes']} paired "
                 f"development seeds per setting)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(result: Dict[str, Any]) -> str:
    base = result["unpruned"]
    lines = [f"unpruned: {base['successes']}/{base['episodes']}",
             f"{'setting':28s} {'replay L1':>9s} {'loop L1':>8s} {'kept':>5s} "
             f"{'success':>8s} {'diff vs unpruned [95% CI]':>28s}"]
    for p in result["points"]:
        d = p["vs_unpruned"]
        loop = p["closed_loop_l1_vs_unpruned"]
        lines.append(
            f"{p['setting']:28s} {p['replay_l1_vs_unpruned']:9.4f} "
            f"{'-' if loop is None else format(loop, '.4f'):>8s} "
            f"{p['replay_kept_visual_tokens_mean']:5.0f} "
            f"{p['successes']:>3d}/{p['episodes']:<4d} "
            f"{d['difference']:+.2f} [{d['difference_ci95'][0]:+.2f}, "
            f"{d['difference_ci95'][1]:+.2f}]")
    for key in ("spearman_replay_l1_vs_success", "spearman_replay_l1_vs_paired_difference",
                "spearman_replay_l1_vs_closed_loop_l1"):
        value = result[key]
        lines.append(f"{key}: {'undefined' if value is None else format(value, '+.2f')}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", required=True, help="recorded simulator bag to replay")
    parser.add_argument("--work", default="runs/replay_vs_success",
                        help="folder of the evaluation and replay JSONs (reused when there)")
    parser.add_argument("--episodes", type=int, default=20, help="paired seeds per setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--l1-every", type=int, default=2,
                        help="closed-loop L1 on every k-th step in the evaluations")
    parser.add_argument("--json", default="", help="write the study here")
    parser.add_argument("--plot", default="", help="write the scatter PNG here")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    paths = {run: os.path.join(args.work, f"eval_{run}.json")
             for run in [MAIN_RUN] + [_keep_scale(v).run for v in KEEP_SCALES]}
    runs = {run: measured(path, eval_command(run, args, path)) for run, path in paths.items()}
    replay_path = os.path.join(args.work, "replay.json")
    replayed = measured(replay_path, replay_command(args, replay_path))
    meta = {"bag": replayed["bag"], "replay_steps": replayed["steps"],
            "replay_episodes": replayed["episodes"],
            "eval_seeds": runs[MAIN_RUN]["seeds"], "eval_via": runs[MAIN_RUN]["via"],
            "horizon": runs[MAIN_RUN]["horizon"], "policy": runs[MAIN_RUN]["policy"],
            "commands": {run: "python " + " ".join(eval_command(run, args, path)[1:])
                         for run, path in paths.items()}}
    meta["commands"]["replay"] = "python " + " ".join(replay_command(args, replay_path)[1:])
    result = study(runs, replayed, meta)
    print(format_table(result))
    write_outputs(result, args.json, args.plot)
    return 0


def write_outputs(result: Dict[str, Any], json_path: str, plot_path: str) -> None:
    """The study's JSON and scatter plot, where asked for."""
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    if plot_path:
        plot(result, plot_path)


if __name__ == "__main__":
    sys.exit(main())
