"""One-off probe (not a product tool): does SpecPrune's kept set lose to a random one of its
size because it clusters (too little of the scene kept), and would mixing in a spread-out
random part help?

On recorded demo frames (open loop), with SpecPrune as configured by the arguments
(``keep_scale``, ``local_first_layer``), each variant keeps a visual-token set from the
layer where SpecPrune's set applies (``local_first_layer + 2``) on, with no layer pruning,
and its action chunk is compared with the unpruned one (mean |normalised action|
difference):

- ``specprune``: SpecPrune as configured (layer pruning and all).
- ``its set``: SpecPrune's static set of that step.
- ``random``: a uniform subset of the same size (per view as SpecPrune's set).
- ``half its set + half random``: a random half of SpecPrune's set, the rest drawn
  uniformly from the tokens it did not keep (same size, same per-view counts).
- ``grid``: the same per-view counts spread over the patch grid at an even stride.
- ``half grid + half its set`` (and ``3/4 grid + 1/4``): that share of the count at an even
  stride, the rest drawn from SpecPrune's set (random tokens where it has too few left).

Besides L1, ``spread`` is the mean distance (in patches) from every patch of a view to the
nearest kept one: how much of the scene a set leaves far from any kept token.

    PYTHONPATH=. .venv/bin/python docs/tabletop_probe/mixture_probe.py POLICY OUT.json \
        KEEP_SCALE LOCAL_FIRST_LAYER DEMO [DEMO ...]
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from specprune import load_policy
from specprune.config import PruneConfig
from specprune.policy import SpecPrunePolicy
from specprune_ros.eval.demo_replay import demo_steps

sys.path.insert(0, "docs/tabletop_probe")
from selection_probe import FixedSetPolicy, run  # noqa: E402


def spread(mask: np.ndarray) -> float:
    """Mean distance (patches) from each patch of a (grid, grid) mask to the nearest kept."""
    kept = np.argwhere(mask)
    if not len(kept):
        return float("nan")
    cells = np.argwhere(np.ones_like(mask, dtype=bool))
    d = np.sqrt(((cells[:, None, :] - kept[None, :, :]) ** 2).sum(-1)).min(1)
    return float(d.mean())


def per_view_sets(masks, patches, draw):
    """One flat index set per step: ``draw(view_mask, view)`` gives each view's kept
    patch indices."""
    return [np.sort(np.concatenate([v * patches + draw(m, v) for v, m in enumerate(step)]))
            for step in masks]


def main(policy_dir: str, out: str, keep_scale: str, first: str, *demos: str) -> None:
    torch.set_num_threads(1)
    base = load_policy(policy_dir)
    s = int(first)
    prune = PruneConfig().updated(layer_depth=32, keep_scale=float(keep_scale),
                                  local_first_layer=s)
    flat = prune.updated(layer_prune_enabled=False)
    layer = s + 2
    rng = np.random.default_rng(0)
    per_demo = {}
    totals: dict = {}
    for demo in demos:
        steps, _ = demo_steps(demo, base, 1, 2)
        ref, _ = run(base, SpecPrunePolicy, prune.updated(enabled=False), steps)
        spec, spec_masks = run(base, SpecPrunePolicy, prune, steps)
        grid = int(round(len(spec_masks[0][0]) ** 0.5))
        patches = grid * grid

        def ours(m, v):
            return np.flatnonzero(m)

        def uniform(m, v):
            return np.sort(rng.choice(patches, int(m.sum()), replace=False))

        def half(m, v):
            mine = np.flatnonzero(m)
            others = np.flatnonzero(~m)
            keep = rng.choice(mine, len(mine) // 2, replace=False)
            fill = rng.choice(others, min(len(others), len(mine) - len(keep)), replace=False)
            return np.sort(np.concatenate([keep, fill]))

        def even(m, v):
            n = int(m.sum())
            return np.unique(np.linspace(0, patches - 1, n).round().astype(int))

        def grid_then_ours(share):
            def draw(m, v):
                n = int(m.sum())
                base = np.unique(np.linspace(0, patches - 1, int(n * share)).round()
                                 .astype(int))
                mine = np.setdiff1d(np.flatnonzero(m), base)
                take = rng.choice(mine, min(len(mine), n - len(base)), replace=False)
                rest = np.setdiff1d(np.arange(patches), np.concatenate([base, take]))
                more = rng.choice(rest, n - len(base) - len(take), replace=False)
                return np.sort(np.concatenate([base, take, more]))
            return draw

        draws = {"its set": ours, "random": uniform, "half its set + half random": half,
                 "grid": even, "half grid + half its set": grid_then_ours(0.5),
                 "3/4 grid + 1/4 its set": grid_then_ours(0.75)}
        rows = {"specprune": spec}
        spreads = {}
        for name, draw in draws.items():
            sets = per_view_sets(spec_masks, patches, draw)

            def setup(policy, i, sets=sets):
                policy.sets, policy.layer = sets, layer
            rows[name] = run(base, FixedSetPolicy, flat, steps, setup)[0]
            spreads[name] = float(np.mean([
                spread(np.isin(np.arange(patches), st[(st >= v * patches)
                                                      & (st < (v + 1) * patches)] - v * patches)
                       .reshape(grid, grid))
                for st in sets for v in range(len(spec_masks[0]))]))
        l1 = {k: float(np.abs(v - ref).mean()) for k, v in rows.items()}
        per_demo[demo] = {"steps": len(steps), "action_l1_vs_unpruned": l1,
                          "spread_patches": spreads,
                          "kept_mean": float(np.mean([sum(int(m.sum()) for m in st)
                                                      for st in spec_masks]))}
        for k, v in l1.items():
            totals.setdefault(k, []).append(v)
        print(demo, json.dumps(per_demo[demo]), flush=True)
    result = {"policy": policy_dir, "keep_scale": float(keep_scale), "local_first_layer": s,
              "set_applies_from_layer": layer,
              "mean_action_l1_vs_unpruned": {k: float(np.mean(v)) for k, v in totals.items()},
              "per_demo": per_demo}
    print(json.dumps(result["mean_action_l1_vs_unpruned"], indent=2))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:])
