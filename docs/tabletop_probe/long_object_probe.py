"""One-off probe (not a product tool): closed loop on a task of the LIBERO-shaped suites,
which objects' patches SpecPrune's static set keeps, for every object of the scene (the
demos label only the acting part's object and target) and the gripper (an approximate box
around the end effector), split by the part being worked on (the first whose goal does not
hold yet).

Episodes run as ``specprune-eval`` runs them (``episodes.DirectRunner``); on each policy
step the scene is observed once more (no time passes) to project every object's box into
both views, in the model's input frame, as the demos' labels are.

    PYTHONPATH=. .venv/bin/python docs/tabletop_probe/long_object_probe.py POLICY TASK \
        EPISODES SEED OUT.json [FIELD=VALUE ...]
"""
from __future__ import annotations

import collections
import json
import sys

import numpy as np
import torch

from specprune import PruneConfig, load_policy
from specprune.model.processing import center_crop_box
from specprune.train.patch_boxes import box_patch_labels, to_model_frame
from specprune_ros.eval import episodes
from specprune_ros.eval.demo_replay import BOX_MIN_COVER
from specprune_ros.eval.episode_env import open_env
from specprune_ros.eval.eval_results import ConfigRun
from specprune_ros.sim.tabletop_demos import object_box, projected_box
from specprune_ros.sim.tabletop_suites import tabletop_task

#: the hand's box (half extents, metres) and its centre above the end-effector point
GRIPPER_HALF, GRIPPER_LIFT = (0.04, 0.06, 0.05), np.array([0.0, 0.0, 0.04])


class Probe:
    """Wraps the policy: on each step, every object's share of patches kept."""

    def __init__(self, policy, env, task) -> None:
        self.policy, self.env, self.task = policy, env, task
        cfg = policy.model.cfg
        self.size, self.crop = cfg.image_size, center_crop_box(cfg.image_size,
                                                               cfg.center_crop_scale)
        self.grid = int(round(policy.model.vision_backbone.num_patches ** 0.5))
        self.names = [o.name for o in task.objects]
        # (part, object) -> [kept, shown]
        self.counts = collections.defaultdict(lambda: [0, 0])

    def box(self, arm, now, camera: str, name: str) -> np.ndarray:
        """An object's box in ``camera``; "gripper": the hand around the end effector, a box
        of GRIPPER_HALF (an approximation: the fingers and the hand above)."""
        if name != "gripper":
            return object_box(arm, camera, now.extras[f"{name}_pos"],
                              self.task.object(name).kind)
        return projected_box(arm, camera, now.eef_pos + GRIPPER_LIFT, GRIPPER_HALF)

    def __getattr__(self, name: str):
        return getattr(self.policy, name)

    def step(self, obs):
        chunk, stats = self.policy.step(obs)
        if stats.kept_masks:
            arm = self.env.arm
            now = arm.observe()
            done, _ = arm.goal_progress()
            part = done.index(False) if False in done else len(done)
            kept = np.stack([m.reshape(-1) for m in stats.kept_masks])  # (views, patches)
            for name in self.names + ["gripper"]:
                boxes = np.array([[self.box(arm, now, cam, name)]
                                  for cam in arm.config.cameras])
                labels = box_patch_labels(to_model_frame(boxes, self.size, *self.crop),
                                          self.size, self.grid, BOX_MIN_COVER)
                shown = labels == 1
                self.counts[(part, name)][0] += int(kept[shown].sum())
                self.counts[(part, name)][1] += int(shown.sum())
            self.counts[(part, "_all")][0] += int(kept.sum())
            self.counts[(part, "_all")][1] += kept.size
        return chunk, stats


def main(policy_dir: str, task_name: str, count: str, seed: str, out: str, *prune) -> None:
    torch.set_num_threads(1)
    base = load_policy(policy_dir, prune_config=PruneConfig(enabled=False))
    cfg = PruneConfig().updated(layer_depth=32, keep_scale=2.0)
    for setting in prune:
        field, value = setting.split("=", 1)
        cfg = cfg.updated(**{field: type(getattr(cfg, field))(json.loads(value))})
    task = tabletop_task(task_name)
    variant = episodes.build_variants(base, ["specprune"], defaults=cfg)["specprune"]
    results = {"task": task_name, "instruction": task.instruction, "prune": prune,
               "episodes": []}
    with open_env(task_name, task.horizon, int(seed)) as env:
        probe = Probe(variant.policy, env, task)
        variant.policy = probe
        runner = episodes.DirectRunner(env, base, task.horizon, l1_every=0)
        for i in range(int(count)):
            record = runner.episode(variant, ConfigRun("specprune", {}), int(seed) + i)
            results["episodes"].append({"seed": int(seed) + i, "success": record.success,
                                        "parts": record.most_parts_held})
            print(f"episode {i}: success {record.success}, parts {record.most_parts_held}",
                  flush=True)
    results["kept_share"] = {
        f"part{p}:{n}": {"kept": k, "shown": s, "share": round(k / s, 3) if s else None}
        for (p, n), (k, s) in sorted(probe.counts.items())}
    for key, row in results["kept_share"].items():
        print(key, row)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
