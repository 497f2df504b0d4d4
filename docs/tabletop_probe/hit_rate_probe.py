"""One-off probe (not a product tool): does a policy's early attention predict its last
layer's, on its own task frames? SpecPrune's premise (the paper: 85-95 % of the top-20
tokens of layers 1-2 reappear in the last layer's top-20 on OpenVLA-7B).

For every ``*_part03.hdf5`` shard in DEMOS (one demo, every 4th frame) the hit rate of
``specprune.bench.hit_rate``: of the last layer's top-20 visual tokens per view (task-text
rows' attention), the share found in the union of layers 0 and 1's top-20. Chance: about
40 / 256 = 0.16 per view of 256 patches.

    PYTHONPATH=. .venv/bin/python docs/tabletop_probe/hit_rate_probe.py POLICY DEMOS OUT.json
"""
from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import torch

from specprune import load_policy
from specprune.bench import hit_rate
from specprune.config import PruneConfig
from specprune_ros.eval.demo_replay import demo_steps


def main(policy_path: str, demos: str, out: str) -> None:
    torch.set_num_threads(1)
    policy = load_policy(policy_path, device="cpu", dtype="float32",
                         prune_config=PruneConfig(enabled=False))
    rates = {}
    for shard in sorted(glob.glob(os.path.join(demos, "*_part03.hdf5"))):
        steps, _ = demo_steps(shard, policy, 4, 1)
        task = os.path.basename(shard)[:-len("_part03.hdf5")]
        rates[task] = float(np.mean([hit_rate(policy, s.observation) for s in steps]))
        print(f"{task}: hit rate {rates[task]:.3f} over {len(steps)} frames", flush=True)
    result = {"policy": policy_path, "demos": demos, "per_task": rates,
              "mean": float(np.mean(list(rates.values())))}
    print(f"mean {result['mean']:.3f}")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
