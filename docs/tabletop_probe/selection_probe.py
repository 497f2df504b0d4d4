"""One-off probe (not a product tool): is it *which* tokens SpecPrune keeps, or *where* it
drops them, that moves a policy's actions away from the unpruned ones?

On recorded demo frames (open loop), every variant keeps a visual-token set and its action
chunk is compared with the unpruned one (mean |normalised action| difference):

- ``specprune``: SpecPrune as configured (after layer 0 to candidates, after layer 1 to
  its set, layer pruning further on).
- ``its set at layer L``: SpecPrune's static set of that step, but kept from layer L on
  with no layer pruning (FastV's place for L = 2).
- ``random, its per-view counts``: a uniform subset with as many tokens in each view as
  SpecPrune's set has, at layer 2.
- ``random``: a uniform subset of the same total over all views, at layer 2 (the pipeline's
  random configuration).
- ``fastv``: FastV at SpecPrune's count.

    PYTHONPATH=. .venv/bin/python docs/tabletop_probe/selection_probe.py POLICY DEMOS OUT.json
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from specprune import load_policy
from specprune.bench import FastVPolicy, RandomDropPolicy
from specprune.config import PruneConfig
from specprune.policy import SpecPrunePolicy
from specprune.prune.baselines import RandomDropHook
from specprune_ros.eval.demo_replay import demo_steps


class FixedSetPolicy(FastVPolicy):
    """Keeps ``sets[step]`` (visual-token indices) from ``layer`` on."""

    sets: list = []

    def reset(self) -> None:
        super().reset()
        self.step_index = 0

    def _make_hook(self, prep, cfg, fine, motion, stats):  # noqa: D102
        hook = RandomDropHook(prep.layout, self.layer, 0, (0,))
        hook.kept = np.asarray(self.sets[self.step_index])
        self.step_index += 1
        return hook


def run(base, kind, prune, steps, setup=lambda policy, i: None):
    policy = kind(base.model, base.tokenizer, base.statistics, base.layout, prune,
                  str(base.device), base.dtype)
    chunks, masks, episode = [], [], None
    for i, step in enumerate(steps):
        if step.episode != episode:
            policy.reset()
            episode = step.episode
        setup(policy, i)
        chunk, stats = policy.step(step.observation)
        chunks.append(chunk.normalized)
        masks.append([m.flatten() for m in stats.kept_masks])
    return np.stack(chunks), masks


def main(policy_dir: str, demos: str, out: str) -> None:
    torch.set_num_threads(1)
    base = load_policy(policy_dir)
    steps, _ = demo_steps(demos, base, 1, 2)
    prune = PruneConfig().updated(layer_depth=32)
    flat = PruneConfig().updated(layer_depth=32, layer_prune_enabled=False)
    ref, _ = run(base, SpecPrunePolicy, PruneConfig().updated(enabled=False), steps)
    spec, spec_masks = run(base, SpecPrunePolicy, prune, steps)
    sets = [np.flatnonzero(np.concatenate(m)) for m in spec_masks]
    per_view = [[int(v.sum()) for v in m] for m in spec_masks]
    patches = len(spec_masks[0][0])
    rng = np.random.default_rng(0)
    quota_sets = [np.sort(np.concatenate([v * patches + rng.choice(patches, n, replace=False)
                                          for v, n in enumerate(counts)]))
                  for counts in per_view]
    rows = {"specprune": spec}

    def fixed(chosen, layer):
        def setup(policy, i):
            policy.sets, policy.layer = chosen, layer
        return run(base, FixedSetPolicy, flat, steps, setup)[0]

    for layer in (1, 2, 4):
        rows[f"its set at layer {layer}"] = fixed(sets, layer)
    rows["random, its per-view counts"] = fixed(quota_sets, 2)

    def budget(policy, i):
        policy.budget, policy.episode_seed = len(sets[i]), steps[i].episode
    rows["random"] = run(base, RandomDropPolicy, flat, steps, budget)[0]
    rows["fastv"] = run(base, FastVPolicy, flat, steps, budget)[0]
    result = {
        "policy": policy_dir, "demos": demos, "steps": len(steps),
        "kept_mean": float(np.mean([len(s) for s in sets])),
        "kept_per_view_mean": np.mean(per_view, axis=0).tolist(),
        "action_l1_vs_unpruned": {k: float(np.abs(v - ref).mean()) for k, v in rows.items()},
    }
    print(json.dumps(result, indent=2))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:4])
