"""``specprune-train``: train an OpenVLA-OFT policy on demonstrations with the OFT recipe.

The OFT recipe (Kim et al. 2025, openvla-oft ``finetune.py``): parallel decoding (all
action slots in one bidirectional pass, empty slot embeddings), L1 regression of the
normalised action chunk by the MLP-ResNet head, AdamW. Here every weight is trained from
scratch (no pretrained backbone can be downloaded) at the ``sim-small`` size.

Training sees exactly what the policy sees at inference: frames through
``processing.pixel_values`` (the centre crop included), proprio through
``normalize_proprio`` with the saved statistics, the prompt through ``encode_prompt``,
the decoder through ``run_decoder`` without a hook, and the head positions of
``model.layout``. The only train-time difference is augmentation of the uint8 frames
before that pipeline: a random shift within the centre crop's margin (the centre crop
then acts as OFT's random 90 %-area crop) and mild brightness / contrast jitter (no hue
jitter: the instruction names a colour).

    specprune-train --demos demos/pick_color.hdf5 --out checkpoints/pick_color \\
        --steps 3000 --minutes 85 --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from specprune.model.checkpoint import TRAINING_SUMMARY, load_checkpoint, save_checkpoint
from specprune.model.loading import resolve_device
from specprune.model.modeling_vla import OpenVLAOFT
from specprune.model.presets import LAYOUTS, preset_config
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id
from specprune.train.auxiliary import AuxiliaryHeads
from specprune.train.batches import Augment, BatchSampler, TrainingData, split_sources
from specprune.train.demo_dataset import (Demos, dataset_statistics, read_demos,
                                          source_demo_counts)
from specprune.train.optimisation import (evaluate, learning_rate, make_optimizer, patch_grid,
                                          seed_everything, train_step)
from specprune.train.resumable import Resumable, load_state, save_state, sources
from specprune.train.run_loop import Log, Loop, stop_on_signals, val_subset
from specprune.train.train_config import TrainConfig


@dataclass
class Run:
    """What one training run produced (also written to training_summary.json)."""

    model: OpenVLAOFT
    data: TrainingData
    statistics: Dict[str, Any]
    train_samples: np.ndarray
    val_samples: np.ndarray
    summary: Dict[str, Any] = field(default_factory=dict)
    sources: Tuple[Tuple[str, str], ...] = ()  # the demo files read (name, content digest)


def prepare(cfg: TrainConfig, log: Log) -> Tuple[Run, Any]:
    """Seeded model, demos in RAM, split, statistics and normalised data."""
    seed_everything(cfg.seed)
    tokenizer = build_tokenizer()
    lay = LAYOUTS["libero"]
    model = OpenVLAOFT(preset_config(cfg.preset, len(tokenizer), empty_token_id(tokenizer)))
    if cfg.init:
        _warm_start(model, cfg.init, log)
    start = time.perf_counter()
    read = sources(cfg.demos)  # before reading: a file that grows meanwhile shows as changed
    demos = read_demos(cfg.demos, lay.chunk, lay.action_dim, lay.proprio_dim,
                       model.cfg.image_size)
    gib = sum(v.nbytes for v in demos.frames) / 2**30
    log(f"read {len(demos)} samples of {len(demos.names)} demos from {cfg.demos} "
        f"({gib:.2f} GiB of frames) in {time.perf_counter() - start:.1f} s")
    counts = source_demo_counts(cfg.demos)
    if sum(counts) != len(demos.names):
        raise ValueError(f"{cfg.demos}: {sum(counts)} demos counted, {len(demos.names)} read")
    train_demos, val_demos = split_sources(counts, cfg.val_demos, cfg.seed)
    train_s, val_s = demos.samples_of(train_demos), demos.samples_of(val_demos)
    mask = [not name.endswith("gripper") for name in lay.action_names]
    stats = dataset_statistics(demos, train_s, mask)
    data = TrainingData(demos, stats, model.cfg, lay, tokenizer)
    weights = cfg.aux_weights
    if weights.enabled:
        data.enable_aux(cfg.colour_min_pixels, cfg.aux_target_scale, cfg.aux_target > 0,
                        patch_grid(model), max(weights.colour, weights.named,
                                               weights.attention) > 0)
        if weights.attention > 0 and weights.attention_target and data.colours is not None:
            raise ValueError("TrainConfig.aux_attention_target needs [object, target] pairs "
                             "with obs/object_boxes (LIBERO, the tabletop suites): colour-cube "
                             "demos label no target")
        if weights.named > 0 and weights.named_layer >= model.num_layers:
            raise ValueError(f"TrainConfig.aux_named_layer={weights.named_layer} needs more "
                             f"than {model.num_layers} decoder layers")
        bad = [i for i in weights.attention_layers if not -model.num_layers <= i
               < model.num_layers]
        if weights.attention > 0 and bad:
            raise ValueError(f"TrainConfig.aux_attention_layers: {bad} outside the model's "
                             f"{model.num_layers} decoder layers")
    params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.preset}: {params / 1e6:.2f} M parameters; {len(train_demos)} train demos "
        f"({len(train_s)} samples), {len(val_demos)} held out ({len(val_s)} samples)")
    return Run(model, data, stats, train_s, val_s, sources=read), tokenizer


def _warm_start(model: OpenVLAOFT, folder: str, log: Log) -> None:
    """Copy every weight of a checkpoint folder into ``model`` (ValueError on a mismatch)."""
    source, _, _, _ = load_checkpoint(folder)
    try:
        model.load_state_dict(source.state_dict())
    except RuntimeError as err:
        raise ValueError(f"TrainConfig.init={folder!r} does not match the preset: {err}") \
            from err
    log(f"warm start from {folder}")


def train(cfg: TrainConfig, log: Optional[Log] = None) -> Run:
    """Train, validate, save ``cfg.out``; returns the run (model, data, summary).

    SIGTERM (and SIGINT, also where a background shell ignores it) ends the sitting after
    the current step, so the saved state is exactly that of a step boundary; then it
    validates and saves like a finished sitting."""
    log = log or _print
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    previous = stop_on_signals()
    try:
        return _train(cfg, log)
    finally:
        torch.set_num_threads(threads)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _train(cfg: TrainConfig, log: Log) -> Run:
    device = torch.device(resolve_device(cfg.device))
    run, tokenizer = prepare(cfg, log)
    model = run.model.to(device).train()
    weights, drop = cfg.aux_weights, cfg.token_drop_settings
    heads = None
    if weights.enabled:
        torch.manual_seed(cfg.seed + 1)  # the model's initialisation stays that of a plain run
        cubes = len(run.data.demos.cube_names[0])
        heads = AuxiliaryHeads(model.decoder.config.hidden_size, cubes, model.cfg.action_dim,
                               patch_grid(model),
                               model.cfg.num_images).to(device)
    augment = Augment(cfg, model.cfg, np.random.default_rng([cfg.seed, 1]))
    sampler = BatchSampler(run.train_samples, run.data.prompt_lengths, cfg.batch_size,
                           cfg.seed, _repeats(run.data.demos, cfg))
    optimizer = make_optimizer(model, cfg, heads)
    val = val_subset(run.val_samples, cfg.val_max_samples)
    loop = Loop(cfg, log, len(val))
    first, read = 0, run.sources
    if cfg.resume:
        first = load_state(cfg, model, heads, optimizer, sampler, augment, loop, log, read)
    state = Resumable(model, heads, optimizer, sampler, augment, device, read)
    # SIGINT / SIGTERM set _STOP (see stop_on_signals): keep_going ends at a step boundary
    for step in itertools.count(first):
        if not loop.keep_going(step):
            break
        batch = run.data.batch(next(sampler), augment).to(device)
        terms = train_step(model, optimizer, batch, learning_rate(step, loop.total, cfg),
                           cfg.grad_clip, cfg.label_weight, heads, weights, drop, step)
        loop.after_step(step, terms, len(batch.ids))
        if loop.save_due():
            run.summary = loop.summary()
            _save_all(cfg, run, tokenizer, state, loop, log)
    run.summary = loop.summary()
    if len(val):
        per_dim = evaluate(model, run.data, val, cfg.batch_size, device)
        run.summary.update(val_l1=float(per_dim.mean()), val_l1_per_dim=per_dim.tolist(),
                           val_samples=int(len(val)))
        log(f"validation L1 (normalised, {len(val)} held-out samples): {per_dim.mean():.4f} "
            f"per dim {np.array2string(per_dim, precision=3)}")
    _save_all(cfg, run, tokenizer, state, loop, log)
    return run


def _repeats(demos: Demos, cfg: TrainConfig) -> Optional[np.ndarray]:
    """Copies per epoch of every sample (early frames oversampled), or None for plain."""
    if cfg.early_repeat == 1 or cfg.early_frames == 0:
        return None
    return np.where(demos.frame_index < cfg.early_frames, cfg.early_repeat, 1)


def _save_all(cfg: TrainConfig, run: Run, tokenizer: Any, state: Resumable, loop: Loop,
              log: Log) -> None:
    """The resumable state, then the exported checkpoint folder (released format)."""
    save_state(cfg, state, loop)
    save(cfg, run, tokenizer, log)  # moves the model to the CPU in eval mode
    state.model.to(state.device).train()
    loop.saved()


def save(cfg: TrainConfig, run: Run, tokenizer: Any, log: Log) -> None:
    """The checkpoint folder (stale head / proprio files removed) + training_summary.json."""
    os.makedirs(cfg.out, exist_ok=True)
    for name in os.listdir(cfg.out):
        if name.startswith(("action_head--", "proprio_projector--")):
            os.remove(os.path.join(cfg.out, name))  # the loader accepts exactly one of each
    env = run.data.demos.env_args
    first = cfg.demos.split(",")[0]  # several folders: the statistics' key is the first's
    dataset = str(env.get("task") or os.path.splitext(os.path.basename(os.path.normpath(
        first)))[0])
    save_checkpoint(cfg.out, run.model.to("cpu").eval(), tokenizer, run.statistics,
                    dataset=dataset, step=run.summary.get("steps", 0))
    summary = dict(run.summary, config=dataclasses.asdict(cfg), torch=torch.__version__,
                   train_demos=int(len(np.unique(run.data.demos.demo_of[run.train_samples]))),
                   train_samples=int(len(run.train_samples)),
                   demo_files=[list(item) for item in run.sources])
    with open(os.path.join(cfg.out, TRAINING_SUMMARY), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    log(f"saved {cfg.out} (dataset key {dataset!r})")


def _print(line: str) -> None:
    print(line, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """One option per TrainConfig field, documented from the field's metadata."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(TrainConfig):
        kind = f.metadata["type"]
        flag, doc = "--" + f.name.replace("_", "-"), f.metadata["doc"]
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", help=doc)
            continue
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default,
                            required=f.name in ("demos", "out"),
                            help=f"{doc} (default: {f.default})")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = TrainConfig(**vars(args))
    except ValueError as err:
        print(f"specprune-train: {err}", file=sys.stderr)
        return 2
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
