"""One-off diagnostic (README, "Trained again"): does the named-object head follow the
instruction's colour word? It made ``named_head_probe_grounded6000_sim_object.json``:

    .venv/bin/python docs/tabletop_probe/named_head_probe.py \\
        runs/tabletop_grounded/checkpoint runs/tabletop_grounded/train_state.pt sim_object \\
        docs/tabletop_probe/named_head_probe_grounded6000_sim_object.json

The shared-scene demos of a suite (demos/tabletop_paired, shard 0 of each task) show one
scene per seed under every task's instruction. Per seed every task has, frame 0: the
named head's logit on each patch (the visual states entering its layer, from the
training state's heads), averaged over the patches of each task's object (its own demo's
object box). Row i, column j: instruction i, object of task j; a grounded head has its
row maximum on the diagonal. Not a product tool: the heads exist only in a training state.
"""
import json
import sys

import h5py
import numpy as np
import torch

from specprune.model.checkpoint import load_checkpoint
from specprune.model.processing import center_crop_box
from specprune.train.auxiliary import AuxiliaryHeads, AuxWeights
from specprune.train.batches import TrainingData
from specprune.train.demo_dataset import read_demos
from specprune.train.optimisation import forward, patch_grid
from specprune.train.patch_boxes import box_patch_labels, to_model_frame


def main(ckpt: str, state: str, suite: str, out: str, tasks: int = 4) -> None:
    torch.set_num_threads(1)
    model, tok, stats, lay = load_checkpoint(ckpt)
    model.eval()
    files = [f"demos/tabletop_paired/{suite}_task{t:02d}_part00.hdf5" for t in range(tasks)]
    demos = read_demos(",".join(files), lay.chunk, lay.action_dim, lay.proprio_dim,
                       model.cfg.image_size)
    data = TrainingData(demos, stats, model.cfg, lay, tok)
    grid = patch_grid(model)
    heads = AuxiliaryHeads(model.decoder.config.hidden_size, 2, model.cfg.action_dim, grid,
                           model.cfg.num_images)
    heads.load_state_dict(torch.load(state, map_location="cpu", weights_only=False)["heads"])
    first = [int(np.flatnonzero(demos.demo_of == d)[0]) for d in range(len(demos.names))]
    by = {}  # (task, seed) -> demo
    for d, name in enumerate(demos.names):
        shard, key = name.split("/")
        with h5py.File(f"demos/tabletop_paired/{shard}") as handle:
            by[(int(shard.split("task")[1][:2]), int(handle["data"][key].attrs["seed"]))] = d
    seeds = sorted(set.intersection(*[{s for (t, s) in by if t == task}
                                      for task in range(tasks)]))
    size = model.cfg.image_size
    top, side = center_crop_box(size, model.cfg.center_crop_scale)
    scores = []
    for seed in seeds:
        samples = [first[by[(t, seed)]] for t in range(tasks)]
        boxes = demos.object_boxes[samples][:, :, :1]  # (tasks, views, 1, 4): each object
        in_model = to_model_frame(boxes, size, top, side, np.zeros(boxes.shape[:2] + (1, 2)))
        cells = box_patch_labels(in_model, size, grid, 10 / (size / grid) ** 2)
        cells = cells.reshape(tasks, -1)
        with torch.no_grad():  # one at a time: a batch needs prompts of one length
            logit = np.concatenate([heads.named(forward(
                model, data.batch([i]), AuxWeights(named=0.2)).visual_hidden).squeeze(-1)
                .numpy() for i in samples])
        scores.append([[float(logit[i][cells[j] > 0].mean()) for j in range(tasks)]
                       for i in range(tasks)])
    mean = np.mean(scores, axis=0)
    result = {"checkpoint": ckpt, "state": state, "files": files, "seeds": seeds,
              "instructions": [demos.instructions[by[(t, seeds[0])]] for t in range(tasks)],
              "mean_logit": np.round(mean, 3).tolist(),
              "row_max_on_diagonal": [int((np.argmax(np.array(scores)[:, i], axis=1) == i)
                                          .sum()) for i in range(tasks)],
              "per_seed": scores}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "per_seed"}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:5])
