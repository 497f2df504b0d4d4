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
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from specprune.model.checkpoint import load_checkpoint, save_checkpoint
from specprune.config import check_value, documented_field, int_as_float
from specprune.prune.decoder import run_decoder
from specprune.train.demo_dataset import Demos, dataset_statistics, read_demos
from specprune.model.loading import resolve_device
from specprune.model.modeling_vla import OpenVLAOFT, VLAConfig
from specprune.model.presets import LAYOUTS, PRESETS, ActionLayout, preset_config
from specprune.model.processing import center_crop_box, normalize_proprio, pixel_values
from specprune.model.prompting import EncodedPrompt, encode_prompt
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id

Log = Callable[[str], None]


def _spec(default: Any, doc: str, lo: Optional[float] = None, hi: Optional[float] = None,
          kind: Optional[type] = None) -> Any:
    """A TrainConfig field; ``kind`` is its type where the default (None) does not say."""
    return documented_field(default, doc, lo, hi, type=kind or type(default))


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run (validated; ValueError names the field)."""

    demos: str = _spec("", "Demonstration HDF5 (robomimic-style, see demo_dataset.py).")
    out: str = _spec("", "Checkpoint folder to write (released OpenVLA-OFT layout).")
    preset: str = _spec("sim-small", "Architecture preset (specprune.model.presets).")
    init: str = _spec(
        "", "Checkpoint folder to start from (warm start; same preset). Empty: random init. "
        "The optimiser state and schedule start afresh; statistics are recomputed from the "
        "demos (the same for the same file, seed and val_demos).")
    steps: Optional[int] = _spec(
        None, "Optimiser steps; fixes the LR schedule, so the run is reproducible. None: "
        "derived from --minutes after calibration_steps timed steps.", 1, 10**7, int)
    minutes: Optional[float] = _spec(
        None, "Wall-clock budget (minutes) of the training loop + validation (reading the "
        "file comes before); with steps set it only stops early (then validates, saves).",
        0.01, 10**5, float)
    batch_size: int = _spec(16, "Samples per optimiser step.", 1, 4096)
    lr: float = _spec(5e-4, "Peak learning rate (OFT fine-tunes at 5e-4).", 1e-7, 1.0)
    min_lr_ratio: float = _spec(0.1, "Cosine decay ends at lr * min_lr_ratio.", 0.0, 1.0)
    warmup_steps: int = _spec(100, "Linear warm-up steps.", 0, 10**6)
    weight_decay: float = _spec(
        0.01, "AdamW decoupled weight decay on matrices (not on norms, biases).", 0.0, 1.0)
    beta1: float = _spec(0.9, "AdamW beta1.", 0.0, 0.9999)
    beta2: float = _spec(0.95, "AdamW beta2.", 0.0, 0.9999)
    grad_clip: float = _spec(1.0, "Global gradient-norm clip; 0 disables.", 0.0, 1e6)
    seed: int = _spec(0, "Seeds python, numpy, torch, the split, batches and augmentation.",
                      0, 2**31 - 1)
    threads: int = _spec(
        2, "torch.set_num_threads during the run (results depend on it). Use 1 when other "
        "busy processes share a 2-core machine: every parallel op then waits for a core.",
        1, 1024)
    device: str = _spec("cpu", "cpu, cuda[:N] or auto.")
    val_demos: int = _spec(4, "Demos held out (chosen by seed) for the final validation L1.",
                           0, 10**6)
    val_max_samples: int = _spec(
        512, "At most this many held-out samples (evenly spaced) are evaluated.", 1, 10**7)
    shift_pixels: int = _spec(
        5, "Random shift of each frame by up to this many pixels, at most the centre crop's "
        "margin (5 px at 224 / 90 % area): a random-position crop. 0 disables.", 0, 1000)
    brightness: float = _spec(0.1, "Brightness jitter: scale in [1-b, 1+b].", 0.0, 0.9)
    contrast: float = _spec(0.1, "Contrast jitter: scale in [1-c, 1+c].", 0.0, 0.9)
    log_every: int = _spec(20, "Steps between log lines.", 1, 10**6)
    calibration_steps: int = _spec(
        8, "With steps unset: timed steps (after the first) that fix the step count; must "
        "not exceed warmup_steps.", 2, 10**4)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        if not self.demos or not self.out:
            raise ValueError("TrainConfig.demos and TrainConfig.out must be set")
        if self.preset not in PRESETS:
            raise ValueError(f"TrainConfig.preset={self.preset!r} is not one of "
                             f"{', '.join(PRESETS)}")
        if self.steps is None and self.minutes is None:
            raise ValueError("TrainConfig needs steps or minutes (or both)")
        if self.steps is None and self.calibration_steps > self.warmup_steps:
            raise ValueError(f"TrainConfig.calibration_steps={self.calibration_steps} exceeds "
                             f"warmup_steps={self.warmup_steps} (the schedule must be fixed "
                             "before the cosine phase starts)")


def _check_field(f: dataclasses.Field, value: Any) -> None:
    if value is None and f.default is None:
        return
    kind = f.metadata["type"]
    check_value("TrainConfig", f.name, int_as_float(value, kind), kind, f.metadata["min"],
                f.metadata["max"])


@dataclass
class Batch:
    pixels: torch.Tensor  # (B, 6 * views, S, S)
    proprio: torch.Tensor  # (B, proprio_dim), normalised
    ids: torch.Tensor  # (B, n_prompt) prompt ids, BOS first; one length per batch
    prompt: EncodedPrompt  # the first sample's prompt (fixes the layout)
    target: torch.Tensor  # (B, chunk, action_dim), normalised

    def to(self, device: torch.device) -> "Batch":
        return dataclasses.replace(self, pixels=self.pixels.to(device),
                                   proprio=self.proprio.to(device), ids=self.ids.to(device),
                                   target=self.target.to(device))


class TrainingData:
    """Demos with normalised proprio / action chunks and encoded prompts; builds batches."""

    def __init__(self, demos: Demos, statistics: Dict[str, Any], model_cfg: VLAConfig,
                 layout: ActionLayout, tokenizer: Any) -> None:
        self.demos, self.cfg = demos, model_cfg
        kind = layout.normalization
        self.proprio = normalize_proprio(demos.proprio, statistics["proprio"], kind)
        # same bounds formula as proprio: the inverse of processing.unnormalize_actions
        # inside the bounds, clipped to [-1, 1]; masked dims (gripper) pass through
        self.actions = normalize_proprio(demos.actions, statistics["action"], kind)
        self.prompts = [encode_prompt(tokenizer, text, model_cfg.empty_token_id)
                        for text in demos.instructions]
        self.prompt_lengths = np.array([len(self.prompts[d].ids) for d in demos.demo_of])

    def batch(self, samples: Sequence[int], augment: Optional["Augment"] = None) -> Batch:
        prompts = [self.prompts[self.demos.demo_of[i]] for i in samples]
        if len({len(p.ids) for p in prompts}) != 1:
            raise ValueError("a batch needs prompts of one length (group samples by length)")
        pixels = []
        for i in samples:
            frames = [torch.from_numpy(view[i]) for view in self.demos.frames]
            if augment is not None:
                frames = [augment(frame) for frame in frames]
            pixels.append(pixel_values(frames, self.cfg.image_means, self.cfg.image_stds,
                                       self.cfg.center_crop_scale))
        chunks = self.actions[self.demos.chunk_index[np.asarray(samples)]]
        return Batch(pixels=torch.cat(pixels),
                     proprio=torch.tensor(self.proprio[samples], dtype=torch.float32),
                     ids=torch.tensor([p.ids for p in prompts]), prompt=prompts[0],
                     target=torch.tensor(chunks, dtype=torch.float32))


class Augment:
    """Random shift within the centre-crop margin and brightness / contrast jitter."""

    def __init__(self, cfg: TrainConfig, model_cfg: VLAConfig, rng: np.random.Generator):
        margin = crop_margin(model_cfg.image_size, model_cfg.center_crop_scale)
        if cfg.shift_pixels > margin:
            raise ValueError(f"TrainConfig.shift_pixels={cfg.shift_pixels} exceeds the centre "
                             f"crop's margin of {margin} px (wrapped pixels would show)")
        self.shift, self.brightness, self.contrast = cfg.shift_pixels, cfg.brightness, \
            cfg.contrast
        self.rng = rng

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """(S, S, 3) uint8 -> (S, S, 3) uint8."""
        if self.shift:
            dy, dx = (int(d) for d in self.rng.integers(-self.shift, self.shift + 1, size=2))
            frame = torch.roll(frame, shifts=(dy, dx), dims=(0, 1))
        if self.brightness or self.contrast:
            c = 1.0 + self.rng.uniform(-self.contrast, self.contrast)
            b = 1.0 + self.rng.uniform(-self.brightness, self.brightness)
            x = frame.float()
            mean = x.mean()
            frame = (((x - mean) * c + mean) * b).clamp(0, 255).round().to(torch.uint8)
        return frame


def crop_margin(size: int, scale: float) -> int:
    """Pixels between the centre crop (processing.center_crop_box) and the nearest border."""
    top, side = center_crop_box(size, scale)
    return min(top, size - side - top)


def predict(model: OpenVLAOFT, batch: Batch) -> torch.Tensor:
    """Normalised action chunks (B, chunk, action_dim): the policy's unpruned pass."""
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    patches = model.encode_images(batch.pixels)  # (B, views * P, D)
    embeds = model.build_sequence(patches, batch.proprio, batch.ids)  # (B, T, D)
    state = run_decoder(model.decoder, embeds)
    head = state.hidden[:, layout.head_start:layout.head_start + layout.num_head_positions]
    return model.predict_normalized(head)


def batches_of(samples: np.ndarray, lengths: np.ndarray, batch_size: int,
               rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled batches, each of one prompt length (epoch after epoch)."""
    groups = [samples[lengths[samples] == n] for n in np.unique(lengths[samples])]
    while True:
        epoch: List[np.ndarray] = []
        for members in groups:
            perm = rng.permutation(members)
            full = len(perm) // batch_size
            epoch += [perm[i * batch_size:(i + 1) * batch_size] for i in range(full)] or [perm]
        for j in rng.permutation(len(epoch)):
            yield epoch[j]


def learning_rate(step: int, total: Optional[int], cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at ``total``.

    ``total`` may be unknown (None) only during warm-up: a time-budgeted run fixes it after
    ``calibration_steps``, which TrainConfig keeps within ``warmup_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if total is None:
        raise ValueError(f"learning_rate: step {step} is past warm-up but the step count "
                         "is not fixed yet")
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def split_demos(num_demos: int, val_demos: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, validation) demo indices; the held-out ones are chosen by ``seed``."""
    if val_demos >= num_demos:
        raise ValueError(f"TrainConfig.val_demos={val_demos} leaves no training demo "
                         f"(the file has {num_demos})")
    perm = np.random.default_rng(seed).permutation(num_demos)
    return np.sort(perm[val_demos:]), np.sort(perm[:val_demos])


@torch.no_grad()
def evaluate(model: OpenVLAOFT, data: TrainingData, samples: np.ndarray, batch_size: int,
             device: torch.device) -> np.ndarray:
    """Mean L1 per action dimension (normalised space) over ``samples``, no augmentation."""
    was_training = model.training
    model.eval()
    total = np.zeros(data.cfg.action_dim)
    for n in np.unique(data.prompt_lengths[samples]):
        group = samples[data.prompt_lengths[samples] == n]
        for i in range(0, len(group), batch_size):
            batch = data.batch(group[i:i + batch_size]).to(device)
            err = (predict(model, batch) - batch.target).abs()  # (b, chunk, dim)
            total += err.sum(dim=(0, 1)).double().cpu().numpy()
    model.train(was_training)
    return total / (len(samples) * data.cfg.chunk)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: OpenVLAOFT, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    # fused: one kernel for all parameters instead of a loop of small ops per tensor
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def train_step(model: OpenVLAOFT, optimizer: torch.optim.Optimizer, batch: Batch,
               lr: float, grad_clip: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = F.l1_loss(predict(model, batch), batch.target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


@dataclass
class Run:
    """What one training run produced (also written to training_summary.json)."""

    model: OpenVLAOFT
    data: TrainingData
    statistics: Dict[str, Any]
    train_samples: np.ndarray
    val_samples: np.ndarray
    summary: Dict[str, Any] = field(default_factory=dict)


def prepare(cfg: TrainConfig, log: Log) -> Tuple[Run, Any]:
    """Seeded model, demos in RAM, split, statistics and normalised data."""
    seed_everything(cfg.seed)
    tokenizer = build_tokenizer()
    lay = LAYOUTS["libero"]
    model = OpenVLAOFT(preset_config(cfg.preset, len(tokenizer), empty_token_id(tokenizer)))
    if cfg.init:
        _warm_start(model, cfg.init, log)
    start = time.perf_counter()
    demos = read_demos(cfg.demos, lay.chunk, lay.action_dim, lay.proprio_dim,
                       model.cfg.image_size)
    gib = sum(v.nbytes for v in demos.frames) / 2**30
    log(f"read {len(demos)} samples of {len(demos.names)} demos from {cfg.demos} "
        f"({gib:.2f} GiB of frames) in {time.perf_counter() - start:.1f} s")
    train_demos, val_demos = split_demos(len(demos.names), cfg.val_demos, cfg.seed)
    train_s, val_s = demos.samples_of(train_demos), demos.samples_of(val_demos)
    mask = [not name.endswith("gripper") for name in lay.action_names]
    stats = dataset_statistics(demos, train_s, mask)
    data = TrainingData(demos, stats, model.cfg, lay, tokenizer)
    params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.preset}: {params / 1e6:.2f} M parameters; {len(train_demos)} train demos "
        f"({len(train_s)} samples), {len(val_demos)} held out ({len(val_s)} samples)")
    return Run(model, data, stats, train_s, val_s), tokenizer


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
    """Train, validate, save ``cfg.out``; returns the run (model, data, summary)."""
    log = log or _print
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, log)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, log: Log) -> Run:
    device = torch.device(resolve_device(cfg.device))
    run, tokenizer = prepare(cfg, log)
    model = run.model.to(device).train()
    augment = Augment(cfg, model.cfg, np.random.default_rng([cfg.seed, 1]))
    batches = batches_of(run.train_samples, run.data.prompt_lengths, cfg.batch_size,
                         np.random.default_rng([cfg.seed, 2]))
    optimizer = make_optimizer(model, cfg)
    val = _val_subset(run.val_samples, cfg.val_max_samples)
    loop = _Loop(cfg, log, len(val))
    try:
        for step in itertools.count():
            if not loop.keep_going(step):
                break
            batch = run.data.batch(next(batches), augment).to(device)
            loss = train_step(model, optimizer, batch, learning_rate(step, loop.total, cfg),
                              cfg.grad_clip)
            loop.after_step(step, loss, len(batch.ids))
    except KeyboardInterrupt:
        log(f"interrupted after {loop.done} steps: validating and saving what there is")
    run.summary = loop.summary()
    if len(val):
        per_dim = evaluate(model, run.data, val, cfg.batch_size, device)
        run.summary.update(val_l1=float(per_dim.mean()), val_l1_per_dim=per_dim.tolist(),
                           val_samples=int(len(val)))
        log(f"validation L1 (normalised, {len(val)} held-out samples): {per_dim.mean():.4f} "
            f"per dim {np.array2string(per_dim, precision=3)}")
    save(cfg, run, tokenizer, log)
    return run


def _val_subset(samples: np.ndarray, limit: int) -> np.ndarray:
    if len(samples) <= limit:
        return samples
    return samples[np.linspace(0, len(samples) - 1, limit).round().astype(int)]


class _Loop:
    """Step count, time budget, calibration and log lines of the training loop."""

    def __init__(self, cfg: TrainConfig, log: Log, val_count: int) -> None:
        self.cfg, self.log, self.val_count = cfg, log, val_count
        self.total = cfg.steps
        self.budget_s = cfg.minutes * 60.0 if cfg.minutes is not None else math.inf
        self.start = self.window_start = time.perf_counter()
        self.calib_start = self.start
        self.done, self.seen, self.window_seen = 0, 0, 0
        self.window_losses: List[float] = []
        self.last_loss = math.nan

    def keep_going(self, step: int) -> bool:
        if self.total is not None and step >= self.total:
            return False
        if time.perf_counter() - self.start + self._reserve() > self.budget_s:
            self.log(f"time budget of {self.cfg.minutes} min reached after {step} steps")
            return False
        return True

    def _reserve(self) -> float:
        """Seconds kept for validation (forward-only, ~half a sample's training time)."""
        if not self.seen:
            return 0.0
        return self.val_count * (time.perf_counter() - self.start) / self.seen / 2

    def after_step(self, step: int, loss: float, size: int) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at step {step}")
        self.done, self.seen = step + 1, self.seen + size
        self.window_seen += size
        self.window_losses.append(loss)
        now = time.perf_counter()
        if step == 0:
            self.calib_start = now  # the first step pays for allocation: not timed
        if self.total is None and step + 1 == self.cfg.calibration_steps:
            self._calibrate(now, step)
        if self.done % self.cfg.log_every == 0 or self.done == self.total:
            rate = self.window_seen / max(now - self.window_start, 1e-9)
            self.last_loss = float(np.mean(self.window_losses))
            self.log(f"step {self.done}/{self.total or '?'} loss {self.last_loss:.4f} "
                     f"lr {learning_rate(step, self.total, self.cfg):.2e} "
                     f"{rate:.1f} samples/s elapsed {(now - self.start) / 60:.1f} min")
            self.window_start, self.window_seen, self.window_losses = now, 0, []

    def _calibrate(self, now: float, step: int) -> None:
        per_step = (now - self.calib_start) / step
        left = self.budget_s - (now - self.start) - self._reserve()
        self.total = step + 1 + max(0, int(left / per_step))
        self.log(f"calibrated: {per_step:.2f} s/step -> {self.total} steps fit in "
                 f"{self.cfg.minutes} min (pass --steps {self.total} to repeat this run "
                 "exactly)")

    def summary(self) -> Dict[str, Any]:
        elapsed = time.perf_counter() - self.start
        if self.window_losses:
            self.last_loss = float(np.mean(self.window_losses))
        return {"steps": self.done, "samples_seen": self.seen, "train_minutes": elapsed / 60,
                "samples_per_s": self.seen / max(elapsed, 1e-9),
                "final_train_l1": self.last_loss}


def save(cfg: TrainConfig, run: Run, tokenizer: Any, log: Log) -> None:
    """The checkpoint folder (stale head / proprio files removed) + training_summary.json."""
    os.makedirs(cfg.out, exist_ok=True)
    for name in os.listdir(cfg.out):
        if name.startswith(("action_head--", "proprio_projector--")):
            os.remove(os.path.join(cfg.out, name))  # the loader accepts exactly one of each
    env = run.data.demos.env_args
    dataset = str(env.get("task") or os.path.splitext(os.path.basename(cfg.demos))[0])
    save_checkpoint(cfg.out, run.model.to("cpu").eval(), tokenizer, run.statistics,
                    dataset=dataset, step=run.summary.get("steps", 0))
    summary = dict(run.summary, config=dataclasses.asdict(cfg), torch=torch.__version__,
                   train_demos=int(len(np.unique(run.data.demos.demo_of[run.train_samples]))),
                   train_samples=int(len(run.train_samples)))
    with open(os.path.join(cfg.out, "training_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    log(f"saved {cfg.out} (dataset key {dataset!r})")


def _print(line: str) -> None:
    print(line, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """One option per TrainConfig field, documented from the field's metadata."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(TrainConfig):
        kind = f.metadata["type"]
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind,
                            default=f.default, required=f.name in ("demos", "out"),
                            help=f"{f.metadata['doc']} (default: {f.default})")
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
