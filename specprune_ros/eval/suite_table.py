"""``specprune-suite-table``: the paper's Table 1 from specprune-eval JSONs.

Reads the result JSONs and writes a Markdown table with one row per configuration: success
per suite, the average over suites, the median policy step (ms, averaged over suites), the
step and LLM speedups against ``unpruned``, the share of steps in fine mode and the layers
where dynamic layer pruning acted, then one row
per suite and paired comparison (e.g. SpecPrune - unpruned) with its Newcombe interval and
McNemar p. ``--plot`` draws success
per suite and configuration::

    python -m specprune_ros.eval.suite_table docs/eval_*.json --md table.md --plot table.png

A JSON's suite is its ``task``, or for a LIBERO task (``libero_object:3``, as ``--via ros``
runs one task per JSON, or ``libero_object:all``) or one of our tabletop suites' tasks
(``sim_object_2``) the suite's name: the tasks of a suite pool into one column.

- Success: pooled over the suite's episodes (each configuration's ``per_episode``).
- Paired comparisons: recomputed on the pooled per-episode pairs (each task's episodes
  paired by seed, the tasks' pairs put together; a task whose two seed lists differ leaves
  the comparison out, saying so).
- Step ms: the median over every policy step of the suite's episodes (each episode's
  ``step_ms``), pooled over its tasks. Where some episode lacks them (JSONs written before
  they were recorded) the per-task median as the JSON records it, weighted by policy steps
  over the suite's tasks, marked ``*`` and named in the note. Speedup: per task the ratio
  of the medians measured in the same run (unpruned in the same JSON), averaged over the
  suite's tasks.

Refused: a configuration found twice for one task (which one would count?), a mix of claim
and development runs (a table reports one kind), and within a suite tasks run with
different policies (``checkpoint_hash``; a preset's name) or through different runners
(``via``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from specprune_ros.eval.configurations import CONFIGS
from specprune_ros.eval.eval_results import (COMPARISONS, FASTV, GRID, RANDOM, UNPRUNED,
                                             has_step_times)
from specprune_ros.eval.eval_stats import paired_comparison
from specprune_ros.sim.libero_arm import SUITE_TASKS, libero_tasks
from specprune_ros.sim.tabletop_suites import SUITES, tabletop_task

Table = Dict[str, Dict[str, Dict[str, Any]]]  # suite -> configuration -> pooled block
#: configurations without SpecPrune's coarse / fine modes: no fine share ("-", not 0 %)
NO_MODES = (UNPRUNED, FASTV, RANDOM, GRID)
#: the columns' order: the paper's (spatial, object, goal, long), LIBERO's then ours, then
#: any other task by name
SUITE_ORDER = (*SUITE_TASKS, *SUITES)


def suite_order(table: Table) -> List[str]:
    """The table's suites in the paper's column order."""
    return sorted(table, key=lambda s: (SUITE_ORDER.index(s) if s in SUITE_ORDER
                                        else len(SUITE_ORDER), s))


def suite_and_tasks(task: str) -> Tuple[str, Set[int]]:
    """A JSON's suite and the task indices it covers (a task of no suite: itself, {0})."""
    named = libero_tasks(task)
    if named is not None:
        return named[0], set(named[1])
    tabletop = tabletop_task(task)
    return (task, {0}) if tabletop is None else (tabletop.suite, {tabletop.index})


def _policy(result: Dict[str, Any]) -> str:
    """What identifies the policy of a run: its checkpoint hash, or a preset's name."""
    return result.get("checkpoint_hash") or f"preset {result.get('policy')}"


def _check_suite(suite: str, runs: Sequence[Dict[str, Any]]) -> None:
    for key, what in ((_policy, "policies"), (lambda r: r.get("via", "direct"), "runners")):
        seen = sorted({str(key(r)) for r in runs})
        if len(seen) > 1:
            raise ValueError(f"{suite}: its tasks ran with different {what} ({', '.join(seen)})"
                             ": one suite's column pools one policy's runs of one kind")


def collect(results: Sequence[Dict[str, Any]]) -> Table:
    """suite -> configuration -> the pooled block (``successes``, ``episodes``,
    ``success_rate``, ``step_ms_median``, ``_speedup``, ``_tasks``, ``_outcomes``: task ->
    [(seed, success)]); ValueError on a duplicate, mixed claim / development, or a suite
    mixing policies or runners."""
    kinds = {bool(r.get("claim")) for r in results}
    if len(kinds) > 1:
        raise ValueError("claim and development results mixed: tabulate one kind")
    by_suite: Dict[str, List[Dict[str, Any]]] = {}
    for result in results:
        by_suite.setdefault(suite_and_tasks(result["task"])[0], []).append(result)
    table: Table = {}
    for suite, runs in by_suite.items():
        _check_suite(suite, runs)
        table[suite] = _pool(runs)
    return table


def _pool(runs: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The configurations of one suite's JSONs, pooled over its tasks."""
    parts: Dict[str, List[Tuple[Dict[str, Any], Dict[str, Any]]]] = {}
    for result in runs:
        for name, block in result["configs"].items():
            parts.setdefault(name, []).append((result, block))
    pooled = {}
    for name, found in parts.items():
        covered: Set[int] = set()
        for result, _ in found:
            indices = suite_and_tasks(result["task"])[1]
            if covered & indices:
                raise ValueError(f"{result['task']}: configuration {name} appears in two "
                                 "results")
            covered |= indices
        pooled[name] = _pooled_block(name, found)
    return pooled


def _pooled_block(name: str, found: Sequence[Tuple[Dict[str, Any], Dict[str, Any]]]
                  ) -> Dict[str, Any]:
    outcomes = {r["task"]: [(e["seed"], bool(e["success"])) for e in b["per_episode"]]
                for r, b in found}
    wins = sum(ok for pairs in outcomes.values() for _, ok in pairs)
    n = sum(len(pairs) for pairs in outcomes.values())
    step_ms, pooled = _step_ms(found)
    ratios = [_ratio(r["configs"].get(UNPRUNED, {}).get("step_ms_median"),
                     b.get("step_ms_median")) for r, b in found]
    llm = [_ratio(_llm_ms(r["configs"].get(UNPRUNED)), _llm_ms(b)) for r, b in found]
    steps = sum(int(b.get("policy_steps") or 0) for _, b in found)
    fine = sum(int(b.get("fine_steps") or 0) for _, b in found)
    has_modes = name not in NO_MODES and steps > 0
    return {"successes": wins, "episodes": n, "success_rate": wins / n if n else 0.0,
            "step_ms_median": step_ms, "_step_ms_pooled": pooled, "_speedup": _mean(ratios),
            "_llm_speedup": _mean(llm), "_fine": fine / steps if has_modes else None,
            "_acted": sorted({i for _, b in found for i in b.get("layer_pruning_acted", [])}),
            "_tasks": sorted(outcomes), "_outcomes": outcomes}


def _llm_ms(block: Optional[Dict[str, Any]]) -> Optional[float]:
    """A configuration's LLM time on one task: the median over its policy steps where
    every episode keeps them, else the JSON's mean."""
    if not block:
        return None
    episodes = block["per_episode"]
    times = [t for e in episodes for t in e.get("llm_ms") or [] if t is not None]
    if times and all(has_step_times(e, "llm_ms") for e in episodes):
        return float(np.median(times))
    mean = block.get("llm_ms_mean")
    return float(mean) if mean is not None and math.isfinite(mean) else None


def _step_ms(found: Sequence[Tuple[Dict[str, Any], Dict[str, Any]]]
             ) -> Tuple[Optional[float], bool]:
    """A configuration's step time over a suite's tasks and whether it is the true pooled
    median: the median of every policy step's time where every episode holds them, else
    (JSONs written before) each task's median weighted by its policy steps."""
    episodes = [e for _, b in found for e in b["per_episode"]]
    times = [t for e in episodes for t in e.get("step_ms") or [] if t is not None]
    if times and all(has_step_times(e) for e in episodes):
        return float(np.median(times)), True
    medians = [(b.get("step_ms_median"), b.get("policy_steps", 0)) for _, b in found]
    weight = sum(steps for _, steps in medians)
    if weight and all(m is not None and math.isfinite(m) for m, _ in medians):
        return sum(m * steps for m, steps in medians) / weight, False
    return None, False


def paired(suite: Dict[str, Dict[str, Any]], first: str, second: str
           ) -> Tuple[Optional[Dict[str, Any]], str]:
    """``first`` vs ``second`` on the suite's pooled pairs (the tasks both ran, each
    task's episodes paired by seed), or None and why not."""
    a, b = suite[first]["_outcomes"], suite[second]["_outcomes"]
    tasks = sorted(set(a) & set(b))
    mismatched = [t for t in tasks if [s for s, _ in a[t]] != [s for s, _ in b[t]]]
    if not tasks or mismatched:
        return None, f"seeds differ on {', '.join(mismatched)}" if mismatched else "no task"
    return paired_comparison([ok for t in tasks for _, ok in a[t]],
                             [ok for t in tasks for _, ok in b[t]]), ""


def _ratio(slow: Optional[float], fast: Optional[float]) -> Optional[float]:
    if slow is None or fast is None or not fast > 0 or not math.isfinite(slow):
        return None
    return slow / fast


def _order(table: Table) -> List[str]:
    names = {n for suite in table.values() for n in suite}
    return sorted(names, key=lambda n: (list(CONFIGS).index(n) if n in CONFIGS else 99, n))


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present and len(present) == len(values) else None


def rows(table: Table) -> List[Dict[str, Any]]:
    """One row per configuration: success per suite (None where it did not run), and the
    averages (None unless it ran on every suite)."""
    suites = suite_order(table)
    out = []
    for name in _order(table):
        blocks = [table[s].get(name) for s in suites]
        success = [b["success_rate"] if b else None for b in blocks]
        out.append({"config": name, "success": dict(zip(suites, success)),
                    "episodes": dict(zip(suites, [b["episodes"] if b else None
                                                  for b in blocks])),
                    "average": _mean(success),
                    "step_ms": _mean([b.get("step_ms_median") if b else None for b in blocks]),
                    "step_ms_pooled": all(b["_step_ms_pooled"] for b in blocks if b),
                    "speedup": _mean([b["_speedup"] if b else None for b in blocks]),
                    "llm_speedup": _mean([b["_llm_speedup"] if b else None for b in blocks]),
                    "fine": _mean([b["_fine"] if b else None for b in blocks]),
                    "layer_pruning": sorted({i for b in blocks if b for i in b["_acted"]})})
    return out


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _times(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(table: Table) -> str:
    """The Table-1-shaped Markdown (success %, average, step ms, speedup) and the paired
    SpecPrune - unpruned differences per suite."""
    suites = suite_order(table)
    head = ["configuration"] + suites + ["average", "step ms (median)", "speedup",
                                         "LLM speedup", "fine %", "layer pruning at"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(table):
        cells = [row["config"]] + [_pct(row["success"][s]) for s in suites]
        cells += [_pct(row["average"]),
                  "-" if row["step_ms"] is None
                  else f"{row['step_ms']:.1f}" + ("" if row["step_ms_pooled"] else " *"),
                  _times(row["speedup"]), _times(row["llm_speedup"]), _pct(row["fine"]),
                  ",".join(map(str, row["layer_pruning"])) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Success in %, pooled over each suite's episodes. " + "; ".join(
        _coverage(s, table[s]) for s in suites) + ". Step ms: the median of every policy "
        "step of a suite's episodes (pooled over its tasks), averaged over suites" +
        _weighted_note(table) + "; speedup (whole step) and LLM speedup (its decoder "
        "part, the medians of its policy steps): per task against unpruned in the same run, "
        "averaged over a suite's tasks, then over suites; fine %: policy steps in fine mode, "
        "pooled over a suite's tasks, averaged over suites; layer pruning at: the layers of "
        "dynamic layer pruning that dropped tokens on some step of some suite."]
    comparisons, missing = [], []
    for suite in suites:
        for first, second in COMPARISONS:
            if first in table[suite] and second in table[suite]:
                result, why = paired(table[suite], first, second)
                if result:
                    comparisons.append((suite, f"{first} - {second}", result))
                else:
                    missing.append(f"{suite} {first} - {second}: {why}")
    if comparisons:
        lines += ["", "| suite | paired | difference | 95 % CI (Newcombe) | McNemar p | "
                      "only first / only second | pairs |", "|---|---|---|---|---|---|---|"]
        for suite, label, p in comparisons:
            lo, hi = p["difference_ci95"]
            lines.append(f"| {suite} | {label} | {100 * p['difference']:+.1f} pp | "
                         f"{100 * lo:+.1f} to {100 * hi:+.1f} pp | {p['mcnemar_p']:.3f} | "
                         f"{p['only_first']} / {p['only_second']} | {p['episodes']} |")
    if missing:
        lines += ["", "Not paired: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def _weighted_note(table: Table) -> str:
    """The footnote of the step times marked * (some JSON without per-step times)."""
    where = [f"{suite} {name}" for suite in suite_order(table) for name, b in table[suite].items()
             if b["step_ms_median"] is not None and not b["_step_ms_pooled"]]
    if not where:
        return ""
    return ("; * per-task-weighted instead, where a JSON holds no per-step times (written "
            "before they were recorded): per task the median of its policy steps, weighted "
            f"by policy steps over a suite's tasks ({', '.join(where)})")


def _coverage(suite: str, configs: Dict[str, Dict[str, Any]]) -> str:
    """``suite`` N tasks, E episodes (per configuration where they differ)."""
    seen = {(len(b["_tasks"]), b["episodes"]) for b in configs.values()}
    if len(seen) == 1:
        tasks, episodes = seen.pop()
        return f"{suite} {tasks} task{'s' * (tasks > 1)}, {episodes} episodes"
    return f"{suite} " + ", ".join(f"{n} {len(b['_tasks'])} tasks / {b['episodes']} episodes"
                                   for n, b in configs.items())


def plot(table: Table, path: str) -> None:
    """Grouped bars: success (%) per suite, one bar per configuration, plus the average."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows(table)
    groups = suite_order(table) + ["average"]
    width = 0.8 / max(len(data), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) * max(len(data), 1) / 3), 4))
    x = np.arange(len(groups))
    for i, row in enumerate(data):
        values = [row["success"].get(g) if g != "average" else row["average"] for g in groups]
        heights = [np.nan if v is None else 100 * v for v in values]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=row["config"])
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success (%)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="specprune-eval JSONs (one or more per suite)")
    parser.add_argument("--md", help="write the Markdown table here (default: stdout only)")
    parser.add_argument("--plot", help="write a PNG of success per suite here")
    args = parser.parse_args(argv)
    loaded = []
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            loaded.append(json.load(f))
    try:
        table = collect(loaded)
    except ValueError as exc:
        parser.error(str(exc))
    text = markdown(table)
    print(text, end="")
    if args.md:
        with open(args.md, "w", encoding="utf-8") as f:
            f.write(text)
    if args.plot:
        plot(table, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
