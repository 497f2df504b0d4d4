"""``specprune-suite-table``: the paper's Table 1 from specprune-eval JSONs, one per suite.

Reads the result JSONs (one or more per suite; the suite is each JSON's ``task``) and
writes a Markdown table with one row per configuration: success per suite, the average
over suites, the median policy step (ms, averaged over suites) and the step speedup
against ``unpruned`` (per suite the ratio of the medians measured in the same run, then
averaged), then one row per suite of the paired SpecPrune - unpruned difference with its
Newcombe interval and McNemar p. ``--plot`` draws success per suite and configuration::

    python -m specprune_ros.eval.suite_table docs/eval_*.json --md table.md --plot table.png

A configuration found in two JSONs of the same suite is refused (which one would count?),
and so is a mix of claim and development runs: a table reports one kind.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from specprune_ros.eval.configurations import CONFIGS
from specprune_ros.eval.eval_results import SPECPRUNE, UNPRUNED

Table = Dict[str, Dict[str, Dict[str, Any]]]  # suite -> configuration -> its JSON block


def collect(results: Sequence[Dict[str, Any]]) -> Table:
    """suite -> configuration -> config block (plus ``_speedup`` and ``_paired`` taken
    from the JSON it ran in); ValueError on a duplicate or mixed claim / development."""
    kinds = {bool(r.get("claim")) for r in results}
    if len(kinds) > 1:
        raise ValueError("claim and development results mixed: tabulate one kind")
    table: Table = {}
    for result in results:
        suite = table.setdefault(result["task"], {})
        configs = result["configs"]
        base = configs.get(UNPRUNED, {}).get("step_ms_median")
        for name, block in configs.items():
            if name in suite:
                raise ValueError(f"{result['task']}: configuration {name} appears in two "
                                 "results")
            entry = dict(block)
            entry["_speedup"] = _ratio(base, block.get("step_ms_median"))
            entry["_paired"] = (result.get("comparisons") or {}).get(f"{name}_vs_{UNPRUNED}")
            suite[name] = entry
    return table


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
    suites = sorted(table)
    out = []
    for name in _order(table):
        blocks = [table[s].get(name) for s in suites]
        success = [b["success_rate"] if b else None for b in blocks]
        out.append({"config": name, "success": dict(zip(suites, success)),
                    "episodes": dict(zip(suites, [b["episodes"] if b else None
                                                  for b in blocks])),
                    "average": _mean(success),
                    "step_ms": _mean([b.get("step_ms_median") if b else None for b in blocks]),
                    "speedup": _mean([b["_speedup"] if b else None for b in blocks])})
    return out


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(table: Table) -> str:
    """The Table-1-shaped Markdown (success %, average, step ms, speedup) and the paired
    SpecPrune - unpruned differences per suite."""
    suites = sorted(table)
    head = ["configuration"] + suites + ["average", "step ms (median)", "speedup"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(table):
        cells = [row["config"]] + [_pct(row["success"][s]) for s in suites]
        cells += [_pct(row["average"]),
                  "-" if row["step_ms"] is None else f"{row['step_ms']:.1f}",
                  "-" if row["speedup"] is None else f"{row['speedup']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    episodes = {s: sorted({b["episodes"] for b in table[s].values()}) for s in suites}
    lines.append("")
    lines.append("Success in %; episodes per suite: " + ", ".join(
        f"{s} {'/'.join(map(str, episodes[s]))}" for s in suites) + ".")
    paired = [(s, table[s][SPECPRUNE]["_paired"]) for s in suites
              if SPECPRUNE in table[s] and table[s][SPECPRUNE].get("_paired")]
    if paired:
        lines += ["", "| suite | specprune - unpruned | 95 % CI (Newcombe) | McNemar p | "
                      "only specprune / only unpruned |", "|---|---|---|---|---|"]
        for suite, p in paired:
            lo, hi = p["difference_ci95"]
            lines.append(f"| {suite} | {100 * p['difference']:+.1f} pp | "
                         f"{100 * lo:+.1f} to {100 * hi:+.1f} pp | {p['mcnemar_p']:.3f} | "
                         f"{p['only_first']} / {p['only_second']} |")
    return "\n".join(lines) + "\n"


def plot(table: Table, path: str) -> None:
    """Grouped bars: success (%) per suite, one bar per configuration, plus the average."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows(table)
    groups = sorted(table) + ["average"]
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
