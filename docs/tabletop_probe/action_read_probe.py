"""One-off probe (not a product tool): does SpecPrune's kept set hold what the action slots
read, or only what the task text attends to?

For every ``*_part03.hdf5`` shard in DEMOS (one demo, every 4th frame), SpecPrune runs as
evaluated (``layer_depth=32``, ``keep_scale=2``) and its static kept set is taken from
each step. An unpruned pass over the same frame records Eq. 1 scores at every layer from 2
on (where the set applies) twice: with the task-text rows as queries (SpecPrune's) and with
the action-slot rows (the head's positions) as queries. Reported per task: the share of
each kind of attention mass, averaged over those layers, that falls on the kept set, next
to the share of the visual tokens kept (what a random set of that size holds on average).

    PYTHONPATH=. .venv/bin/python docs/tabletop_probe/action_read_probe.py POLICY DEMOS OUT.json
"""
from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import torch

from specprune import load_policy
from specprune.config import PruneConfig
from specprune.policy import SpecPrunePolicy
from specprune.prune.decoder import run_decoder
from specprune.prune.pruning_hooks import ScoreProbe
from specprune_ros.eval.demo_replay import demo_steps


def mass_on(scores: dict, kept: np.ndarray) -> float:
    shares = []
    for s in scores.values():
        s = torch.nan_to_num(s.detach().float(), neginf=0.0).numpy()
        shares.append(float(s[kept].sum() / max(s.sum(), 1e-12)))
    return float(np.mean(shares))


def main(policy_path: str, demos: str, out: str) -> None:
    torch.set_num_threads(1)
    base = load_policy(policy_path, device="cpu", dtype="float32",
                       prune_config=PruneConfig(enabled=False))
    spec = SpecPrunePolicy(base.model, base.tokenizer, base.statistics, base.layout,
                           PruneConfig().updated(layer_depth=32, keep_scale=2.0),
                           str(base.device), base.dtype)
    layers = tuple(range(2, base.model.num_layers))
    per_task = {}
    for shard in sorted(glob.glob(os.path.join(demos, "*_part03.hdf5"))):
        steps, _ = demo_steps(shard, base, 4, 1)
        rows = []
        episode = None
        for step in steps:
            if step.episode != episode:
                spec.reset()
                episode = step.episode
            _, stats = spec.step(step.observation)
            kept = np.concatenate([m.flatten() for m in stats.kept_masks]).astype(bool)
            prep = base._prepare(step.observation)
            lay = prep.layout
            slots = tuple(range(lay.head_start, lay.head_start + lay.num_head_positions))
            text, action = ScoreProbe(lay, layers), ScoreProbe(lay, layers, queries=slots)
            with torch.no_grad():
                run_decoder(base.model.decoder, prep.embeds, text)
                run_decoder(base.model.decoder, prep.embeds, action)
            rows.append((kept.mean(), mass_on(text.scores, kept), mass_on(action.scores, kept)))
        task = os.path.basename(shard)[:-len("_part03.hdf5")]
        kept_share, text_mass, action_mass = (float(v) for v in np.mean(rows, axis=0))
        per_task[task] = {"kept_share": kept_share, "text_mass_kept": text_mass,
                          "action_mass_kept": action_mass, "frames": len(rows)}
        print(f"{task}: kept {kept_share:.3f}, text mass kept {text_mass:.3f}, action-slot "
              f"mass kept {action_mass:.3f} over {len(rows)} frames", flush=True)
    mean = {k: float(np.mean([t[k] for t in per_task.values()]))
            for k in ("kept_share", "text_mass_kept", "action_mass_kept")}
    print("mean", json.dumps(mean))
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"policy": policy_path, "demos": demos, "layers": list(layers),
                   "per_task": per_task, "mean": mean}, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
