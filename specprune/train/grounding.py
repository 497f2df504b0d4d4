"""``specprune-grounding``: does a trained policy use its image, proprio and instruction?

A closed-loop evaluation takes minutes per configuration; this check takes seconds and
says why a policy fails before it is run. On frames of a demonstration file it compares
the policy's first predicted action with the label and measures how much the prediction
moves when one input is replaced by another sample's (the others unchanged):

- ``image``: both views from the next sample of the set (a different scene);
- ``proprio``: the next sample's proprio state;
- ``instruction``: each other instruction of the file with the same token count.

An action dimension the expert varies (label std well above 0) but that no input moves
is predicted as a constant: the policy has not grounded it. For ``pick_color`` a policy
that picks the named cube must move ``y`` with the image and the instruction.

    python -m specprune.train.grounding --checkpoint checkpoints/pick_color \\
        --demos demos/pick_color.hdf5 --frame 0 --max-demos 60

``--json`` writes the figures with what they were measured on: the checkpoint and its
content hash, the demo file, the demos read and their seeds, the frame, and the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import h5py
import numpy as np
import torch

from specprune.bench import machine
from specprune.model.checkpoint import checkpoint_hash, load_checkpoint
from specprune.train.demo_dataset import read_demos
from specprune.model.modeling_vla import OpenVLAOFT
from specprune.train.batches import Batch, TrainingData
from specprune.train.optimisation import predict

SWAPS = ("image", "proprio", "instruction")


@dataclass
class Grounding:
    """Per action dimension: label / prediction spread, correlation, effect of each swap."""

    action_names: Sequence[str]
    samples: int
    label_std: np.ndarray  # (action_dim,)
    pred_std: np.ndarray
    corr: np.ndarray  # NaN where label or prediction is constant
    effect: Dict[str, np.ndarray]  # swap -> mean |prediction change| (action_dim,)

    def as_dict(self) -> Dict[str, object]:
        def per_dim(v: np.ndarray) -> Dict[str, Optional[float]]:
            return {n: (None if not np.isfinite(x) else float(x))
                    for n, x in zip(self.action_names, v)}
        return {"samples": self.samples, "label_std": per_dim(self.label_std),
                "pred_std": per_dim(self.pred_std), "corr": per_dim(self.corr),
                "effect": {k: per_dim(v) for k, v in self.effect.items()}}

    def table(self) -> str:
        cols = ["label_std", "pred_std", "corr"] + [f"d_{s}" for s in SWAPS]
        rows = [f"{'dim':<8}" + "".join(f"{c:>14}" for c in cols)]
        for i, name in enumerate(self.action_names):
            values = [self.label_std[i], self.pred_std[i], self.corr[i]] + \
                [self.effect[s][i] for s in SWAPS]
            rows.append(f"{name:<8}" + "".join(f"{v:>14.4f}" for v in values))
        return "\n".join(rows)


@torch.no_grad()
def measure(model: OpenVLAOFT, data: TrainingData, samples: np.ndarray,
            action_names: Sequence[str], batch_size: int = 16) -> Grounding:
    """Swap effects on ``samples`` (normalised action space, first step of the chunk)."""
    if len(samples) < 2:
        raise ValueError("grounding needs at least two samples (swaps take another one's)")
    was_training = model.training
    model.eval()
    try:
        full = _collate(data, samples, batch_size)
        base = _first_action(model, full, batch_size)
        target = full.target[:, 0].numpy()
        moved = np.roll(np.arange(len(samples)), -1)  # sample i takes sample i+1's input
        effect = {
            "image": _change(model, _replace(full, pixels=full.pixels[moved]), base, batch_size),
            "proprio": _change(model, _replace(full, proprio=full.proprio[moved]), base,
                               batch_size),
            "instruction": _instruction_change(model, data, full, base, batch_size),
        }
    finally:
        model.train(was_training)
    return Grounding(
        action_names=tuple(action_names), samples=len(samples), label_std=target.std(0),
        pred_std=base.std(0), corr=_corr(base, target), effect=effect)


def _collate(data: TrainingData, samples: np.ndarray, batch_size: int) -> Batch:
    lengths = {int(data.prompt_lengths[i]) for i in samples}
    if len(lengths) != 1:
        raise ValueError("grounding samples need prompts of one token count, got "
                         f"{sorted(lengths)}")
    parts = [data.batch(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
    return Batch(pixels=torch.cat([p.pixels for p in parts]),
                 proprio=torch.cat([p.proprio for p in parts]),
                 ids=torch.cat([p.ids for p in parts]), prompt=parts[0].prompt,
                 target=torch.cat([p.target for p in parts]))


def _replace(batch: Batch, **tensors: torch.Tensor) -> Batch:
    fields = dict(pixels=batch.pixels, proprio=batch.proprio, ids=batch.ids,
                  prompt=batch.prompt, target=batch.target)
    fields.update(tensors)
    return Batch(**fields)


def _first_action(model: OpenVLAOFT, batch: Batch, batch_size: int) -> np.ndarray:
    out = []
    for i in range(0, len(batch.ids), batch_size):
        part = _replace(batch, pixels=batch.pixels[i:i + batch_size],
                        proprio=batch.proprio[i:i + batch_size],
                        ids=batch.ids[i:i + batch_size], target=batch.target[i:i + batch_size])
        out.append(predict(model, part)[:, 0].numpy())
    return np.concatenate(out)  # (N, action_dim)


def _change(model: OpenVLAOFT, batch: Batch, base: np.ndarray, batch_size: int) -> np.ndarray:
    return np.abs(_first_action(model, batch, batch_size) - base).mean(0)


def _instruction_change(model: OpenVLAOFT, data: TrainingData, batch: Batch,
                        base: np.ndarray, batch_size: int) -> np.ndarray:
    """Mean over every (sample, other instruction of the file with its token count) pair;
    NaN when the file has no other instruction of that length."""
    candidates = {tuple(p.ids): p for p in data.prompts if len(p.ids) == batch.ids.shape[1]}
    changes = []
    for ids, prompt in candidates.items():
        swapped = torch.tensor(ids).expand_as(batch.ids).clone()
        other = ~(batch.ids == swapped).all(dim=1).numpy()
        if not other.any():
            continue
        pred = _first_action(model, _replace(batch, ids=swapped, prompt=prompt), batch_size)
        changes.append(np.abs(pred - base)[other])
    if not changes:
        return np.full(base.shape[1], np.nan)
    return np.concatenate(changes).mean(0)


def _corr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    out = np.full(pred.shape[1], np.nan)
    for k in range(pred.shape[1]):
        if pred[:, k].std() > 1e-8 and target[:, k].std() > 1e-8:
            out[k] = np.corrcoef(pred[:, k], target[:, k])[0, 1]
    return out


def frame_samples(demo_of: np.ndarray, frame: int, max_demos: int) -> np.ndarray:
    """Sample ``frame`` of each of the first ``max_demos`` demos (clamped to its last)."""
    if frame < 0 or max_demos < 2:
        raise ValueError(f"need frame >= 0 and max_demos >= 2, got {frame}, {max_demos}")
    picked = []
    for demo in np.unique(demo_of)[:max_demos]:
        rows = np.flatnonzero(demo_of == demo)
        picked.append(rows[min(frame, len(rows) - 1)])
    return np.asarray(picked)


def demo_seeds(path: str, names: Sequence[str]) -> List[Optional[int]]:
    """The ``seed`` attribute of each named demo of ``path`` (None where it has none)."""
    with h5py.File(path, "r") as f:
        seeds = [f["data"][name].attrs.get("seed") for name in names]
    return [None if seed is None else int(seed) for seed in seeds]


def provenance(args: argparse.Namespace, names: Sequence[str], model: OpenVLAOFT
               ) -> Dict[str, Any]:
    """What the figures were measured on: checkpoint (and its content hash), demo file,
    the demos read and their seeds, frame, and the machine."""
    weight = next(model.parameters())
    return {"checkpoint": args.checkpoint, "checkpoint_hash": checkpoint_hash(args.checkpoint),
            "demos": args.demos, "demo_names": list(names),
            "demo_seeds": demo_seeds(args.demos, names), "frame": args.frame,
            "max_demos": args.max_demos,
            "machine": machine(args.threads, str(weight.device),
                               str(weight.dtype).replace("torch.", ""))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder")
    parser.add_argument("--demos", required=True, help="demonstration HDF5")
    parser.add_argument("--frame", type=int, default=0,
                        help="which step of each demo (0: the first, where the expert "
                        "moves towards the cube; default 0)")
    parser.add_argument("--max-demos", type=int, default=60,
                        help="demos read from the file, one sample each (default 60)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model, tokenizer, statistics, layout = load_checkpoint(args.checkpoint)
        demos = read_demos(args.demos, layout.chunk, layout.action_dim, layout.proprio_dim,
                           model.cfg.image_size, max_demos=args.max_demos)
        data = TrainingData(demos, statistics, model.cfg, layout, tokenizer)
        samples = frame_samples(demos.demo_of, args.frame, args.max_demos)
        result = measure(model, data, samples, layout.action_names)
    except (OSError, ValueError) as err:
        print(f"specprune-grounding: {err}", file=sys.stderr)
        return 2
    print(f"{args.checkpoint} on frame {args.frame} of {result.samples} demos of {args.demos}"
          " (normalised actions; d_X: mean |change| of the prediction when X comes from "
          "another sample)")
    print(result.table())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(provenance(args, demos.names, model), **result.as_dict()), f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
