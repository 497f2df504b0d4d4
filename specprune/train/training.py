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
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from specprune.model.checkpoint import load_checkpoint, save_checkpoint
from specprune.config import check_value, documented_field, int_as_float
from specprune.prune.decoder import run_decoder
from specprune.prune.scoring import batched_query_attention, column_scores
from specprune.train.auxiliary import (TARGET_READOUTS, AuxiliaryHeads, AuxLabels, AuxWeights,
                                       Features, LayerInputs, model_rgb, named_index,
                                       patch_colour_labels)
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
    # the training-only auxiliary heads (train/auxiliary.py); 0 disables a head
    aux_position: float = _spec(
        0.0, "Weight of the patch-position head: each projected patch token -> its own "
        "(row, col), MSE (grounded recipe: 0.2).", 0.0, 100.0)
    aux_colour: float = _spec(
        0.0, "Weight of the patch-colour head: each projected patch token -> which cube "
        "colour it shows, cross-entropy (recipe: 0.1).", 0.0, 100.0)
    aux_named: float = _spec(
        0.0, "Weight of the named-cube head: visual hidden states entering decoder layer "
        "aux_named_layer -> 'this patch shows the named cube', BCE (recipe: 0.2).", 0.0, 100.0)
    aux_named_pos_weight: float = _spec(
        10.0, "BCE pos_weight of the named head (few patches show the named cube).", 0.0, 1e4)
    aux_named_layer: int = _spec(
        2, "Decoder layer whose input feeds the named head (2: after layers 0 and 1).", 1, 1000)
    aux_target: float = _spec(
        0.0, "Weight of the target head: the first chunk step's head states -> the named "
        "cube relative to the end effector (base frame), L1, pre-grasp frames (recipe: 0.3). "
        "Needs obs/cube_pos in the demos.", 0.0, 100.0)
    aux_target_scale: float = _spec(10.0, "Metres -> units of the target head's label.",
                                    1e-3, 1e4)
    aux_target_readout: str = _spec(
        "linear", "Readout of the target head: 'linear' (LayerNorm + Linear) or 'fixed' "
        "(parameter-free: the first three coordinates of the states, so the decoder must "
        "write the position at unit scale; see train/auxiliary.py).")
    aux_target_all_frames: bool = _spec(
        False, "Supervise the target head on every frame, not only before the grasp.",
        kind=bool)
    aux_attention: float = _spec(
        0.0, "Weight of the attention loss: -log of the share of the task-text rows' "
        "attention on the named cube's patches at aux_attention_layers (SpecPrune's score).",
        0.0, 100.0)
    aux_attention_layers: str = _spec(
        "0,1,-1", "Comma-separated decoder layers of the attention loss (SpecPrune scores "
        "V_local at 0 and 1, V_global at global_score_layers; -1: the last).")
    colour_min_pixels: int = _spec(
        10, "Pixels of one cube colour that make a patch show that cube (of 196 in a 14 px "
        "patch).", 1, 10**6)
    label_weight: float = _spec(
        0.0, "Action L1 weight 1 + label_weight * |label| per element (normalised by the "
        "weights' mean): emphasises the rare large moves. 0: the plain OFT L1.", 0.0, 100.0)
    early_frames: int = _spec(
        8, "The first early_frames samples of each demo (where the lateral move is large) "
        "are drawn early_repeat times per epoch.", 0, 10**6)
    early_repeat: int = _spec(1, "Copies per epoch of each early frame (1: no oversampling).",
                              1, 100)
    sitting_steps: Optional[int] = _spec(
        None, "Stop this sitting after this many steps (saving the resumable state); the LR "
        "schedule still follows steps. None: run to steps / minutes.", 1, 10**7, int)
    stop_step: Optional[int] = _spec(
        None, "End the run at this global step (validating, saving the resumable state and "
        "the checkpoint folder) while the LR schedule follows steps: one stage of a longer "
        "schedule, reproducible and resumable. None: run to steps / minutes.", 1, 10**7, int)
    save_every_minutes: float = _spec(
        10.0, "Minutes between saves of the resumable state and the checkpoint folder.",
        0.1, 10**5)
    state_dir: str = _spec(
        "", "Folder of the resumable state (train_state.pt: weights, auxiliary heads, "
        "optimiser, sampler and RNG states). Empty: runs/<name of --out>.")
    resume: bool = _spec(
        False, "Continue from state_dir/train_state.pt exactly where it stopped (the same "
        "settings; minutes, logging and saving may change; threads and device too, but then "
        "the result is no longer bitwise that of one uninterrupted run).", kind=bool)

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
        if self.aux_target_readout not in TARGET_READOUTS:
            raise ValueError(f"TrainConfig.aux_target_readout={self.aux_target_readout!r} is "
                             f"not one of {', '.join(TARGET_READOUTS)}")
        _layer_list(self.aux_attention_layers)
        if self.resume and self.steps is None:
            raise ValueError("TrainConfig.resume needs steps (the LR schedule of the run)")
        if self.steps is None and self.calibration_steps > self.warmup_steps:
            raise ValueError(f"TrainConfig.calibration_steps={self.calibration_steps} exceeds "
                             f"warmup_steps={self.warmup_steps} (the schedule must be fixed "
                             "before the cosine phase starts)")

    @property
    def aux_weights(self) -> AuxWeights:
        return AuxWeights(self.aux_position, self.aux_colour, self.aux_named, self.aux_target,
                          self.aux_named_pos_weight, self.aux_named_layer,
                          self.aux_target_readout, self.aux_target_all_frames,
                          self.aux_attention, _layer_list(self.aux_attention_layers))

    @property
    def state_path(self) -> str:
        folder = self.state_dir or os.path.join("runs", os.path.basename(os.path.normpath(
            self.out)))
        return os.path.join(folder, "train_state.pt")


def _layer_list(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"TrainConfig.aux_attention_layers={text!r} is not a comma-separated "
                         "list of layer indices") from None


#: Fields that may differ between a run and its resumption. All but threads and device
#: leave the result unchanged; a change of those two keeps the run going but no longer
#: bitwise-equal to an uninterrupted one (logged when it happens).
RESUMABLE_CHANGES = ("minutes", "sitting_steps", "stop_step", "threads", "device", "log_every",
                     "save_every_minutes", "state_dir", "resume", "val_max_samples")
_INEXACT_CHANGES = ("threads", "device")


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
    aux: Optional[AuxLabels] = None  # labels of the training-only heads

    def to(self, device: torch.device) -> "Batch":
        return dataclasses.replace(self, pixels=self.pixels.to(device),
                                   proprio=self.proprio.to(device), ids=self.ids.to(device),
                                   target=self.target.to(device),
                                   aux=None if self.aux is None else self.aux.to(device))


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
        self.aux_settings: Optional[Tuple[int, float, int]] = None  # min px, scale, grid

    def enable_aux(self, min_pixels: int, target_scale: float, need_cubes: bool,
                   grid: int) -> None:
        """Build AuxLabels with every batch; ValueError when the demos lack what they need."""
        if not self.demos.cube_colors:
            raise ValueError("the auxiliary heads need the demos' cube colours and positions "
                             "(obs/cube_pos, attrs cube_colors): record the demos again with "
                             "specprune-demos")
        colors = self.demos.cube_colors
        self.named = np.array([named_index(text, colors) for text in self.demos.instructions])
        self.pre_grasp = _pre_grasp(self.demos)
        self.aux_settings = (min_pixels, target_scale, grid)
        if need_cubes and self.demos.cube_pos is None:
            raise ValueError("the target head needs obs/cube_pos in the demos")

    def aux_labels(self, samples: Sequence[int], pixels: torch.Tensor) -> AuxLabels:
        """Labels of the auxiliary heads for ``samples`` whose pixel values are ``pixels``."""
        assert self.aux_settings is not None and self.demos.cube_colors is not None
        min_pixels, scale, grid = self.aux_settings
        idx = np.asarray(samples)
        views = self.cfg.num_images
        rgb = model_rgb(pixels, views, self.cfg.image_means[0], self.cfg.image_stds[0])
        colour = patch_colour_labels(rgb, self.demos.cube_colors, grid, min_pixels)
        named = self.named[self.demos.demo_of[idx]]
        if self.demos.cube_pos is not None:
            cube = self.demos.cube_pos[idx, named]  # (B, 3) base frame
            target = (cube - self.demos.proprio[idx, :3]) * scale
        else:
            target = np.zeros((len(idx), 3))
        return AuxLabels(colour=colour.view(len(idx), -1), named=torch.as_tensor(named),
                         target=torch.tensor(target, dtype=torch.float32),
                         target_mask=torch.as_tensor(self.pre_grasp[idx]))

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
                                       self.cfg.center_crop_scale, self.cfg.image_pipeline))
        chunks = self.actions[self.demos.chunk_index[np.asarray(samples)]]
        pixel_batch = torch.cat(pixels)
        aux = self.aux_labels(samples, pixel_batch) if self.aux_settings else None
        return Batch(pixels=pixel_batch,
                     proprio=torch.tensor(self.proprio[samples], dtype=torch.float32),
                     ids=torch.tensor([p.ids for p in prompts]), prompt=prompts[0],
                     target=torch.tensor(chunks, dtype=torch.float32), aux=aux)


def _pre_grasp(demos: Demos) -> np.ndarray:
    """(N,) bool: the sample lies before its demo's first 'close the gripper' label."""
    closing = demos.actions[:, -1] > 0
    first = np.full(len(demos.names), np.iinfo(np.int64).max)
    hits = np.flatnonzero(closing)
    np.minimum.at(first, demos.demo_of[hits], demos.frame_index[hits])
    return demos.frame_index < first[demos.demo_of]


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


def forward(model: OpenVLAOFT, batch: Batch, weights: Optional[AuxWeights] = None) -> Features:
    """The policy's unpruned pass, exposing what the enabled auxiliary losses read."""
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    patches = model.encode_images(batch.pixels)  # (B, views * P, D)
    embeds = model.build_sequence(patches, batch.proprio, batch.ids)  # (B, T, D)
    n = model.num_layers
    captured = weights.captured_layers(n) if weights is not None else ()
    missing = [i for i in captured if i >= model.num_layers]
    if missing:
        raise ValueError(f"decoder layers {missing} do not exist ({model.num_layers} layers)")
    hook = LayerInputs(captured) if captured else None
    state = run_decoder(model.decoder, embeds, hook)
    head = state.hidden[:, layout.head_start:layout.head_start + layout.num_head_positions]
    vis = slice(layout.visual_start, layout.visual_start + layout.num_visual)
    feats = Features(actions=model.predict_normalized(head), patches=patches,
                     visual_hidden=None, head_hidden=head)
    if hook is None or weights is None:
        return feats
    if weights.named > 0:
        feats.visual_hidden = hook.states[weights.named_layer][0][:, vis]
    if weights.attention > 0:
        queries = torch.tensor(layout.query_positions, device=embeds.device)
        feats.text_to_visual = {}
        for i in weights.attention_indices(n):
            hidden, cos, sin = hook.states[i]
            probs = batched_query_attention(model.decoder.layers[i], hidden, cos, sin, queries)
            feats.text_to_visual[i] = column_scores(probs, vis)  # (B, V*P): SpecPrune's Eq. 1
    return feats


def patch_grid(model: OpenVLAOFT) -> int:
    """Patches per side of one view (16 for 224 px and 14 px patches)."""
    return int(round(math.sqrt(model.vision_backbone.num_patches)))


def predict(model: OpenVLAOFT, batch: Batch) -> torch.Tensor:
    """Normalised action chunks (B, chunk, action_dim): the policy's unpruned pass."""
    return forward(model, batch).actions


def action_loss(pred: torch.Tensor, target: torch.Tensor, label_weight: float) -> torch.Tensor:
    """The OFT L1; with label_weight > 0 each element weighs 1 + label_weight * |label|
    (normalised by the mean weight, so the scale of the loss stays that of an L1)."""
    err = (pred - target).abs()
    if not label_weight:
        return err.mean()
    weight = 1.0 + label_weight * target.abs()
    return (err * weight).sum() / weight.sum()


class BatchSampler:
    """Endless shuffled batches, each of one prompt length, epoch after epoch.

    Epoch e is shuffled by its own generator (seed, 2, e), so the sampler's whole state is
    (epoch, position): a resumed run draws exactly the batches it would have drawn."""

    def __init__(self, samples: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int,
                 repeat: Optional[np.ndarray] = None) -> None:
        if repeat is not None:  # oversampling: sample i appears repeat[i] times per epoch
            samples = np.repeat(samples, repeat[samples])
        self.groups = [samples[lengths[samples] == n] for n in np.unique(lengths[samples])]
        self.batch_size, self.seed = batch_size, seed
        self.epoch, self.position = 0, 0
        self._batches = self._epoch_batches()

    def _epoch_batches(self) -> List[np.ndarray]:
        rng = np.random.default_rng([self.seed, 2, self.epoch])
        batches: List[np.ndarray] = []
        size = self.batch_size
        for members in self.groups:
            perm = rng.permutation(members)
            full = len(perm) // size
            batches += [perm[i * size:(i + 1) * size] for i in range(full)] or [perm]
        return [batches[j] for j in rng.permutation(len(batches))]

    def __iter__(self) -> "BatchSampler":
        return self

    def __next__(self) -> np.ndarray:
        if self.position == len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._epoch_batches()
        self.position += 1
        return self._batches[self.position - 1]

    def state(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: Dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = self._epoch_batches()


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


def make_optimizer(model: nn.Module, cfg: TrainConfig,
                   extra: Optional[nn.Module] = None) -> torch.optim.AdamW:
    """AdamW over the model's (and the auxiliary heads') parameters."""
    params = list(model.parameters()) + (list(extra.parameters()) if extra else [])
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    # fused: one kernel for all parameters instead of a loop of small ops per tensor
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def loss_terms(model: OpenVLAOFT, batch: Batch, label_weight: float = 0.0,
               heads: Optional[AuxiliaryHeads] = None,
               weights: Optional[AuxWeights] = None) -> Dict[str, torch.Tensor]:
    """name -> loss: ``l1`` (the OFT action loss) plus the enabled auxiliary terms."""
    use_aux = heads is not None and weights is not None and weights.enabled
    feats = forward(model, batch, weights if use_aux else None)
    terms = {"l1": action_loss(feats.actions, batch.target, label_weight)}
    if use_aux:
        if batch.aux is None:
            raise ValueError("auxiliary heads enabled but the batch carries no labels")
        terms.update(heads.losses(feats, batch.aux, weights))
    return terms


def train_step(model: OpenVLAOFT, optimizer: torch.optim.Optimizer, batch: Batch,
               lr: float, grad_clip: float, label_weight: float = 0.0,
               heads: Optional[AuxiliaryHeads] = None,
               weights: Optional[AuxWeights] = None) -> Dict[str, float]:
    """One optimiser step on the sum of the loss terms; returns each term's value."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    terms = loss_terms(model, batch, label_weight, heads, weights)
    loss = torch.stack(list(terms.values())).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return {name: float(value.detach()) for name, value in terms.items()}


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
    weights = cfg.aux_weights
    if weights.enabled:
        data.enable_aux(cfg.colour_min_pixels, cfg.aux_target_scale, cfg.aux_target > 0,
                        patch_grid(model))
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
    """Train, validate, save ``cfg.out``; returns the run (model, data, summary).

    SIGTERM (and SIGINT, also where a background shell ignores it) ends the sitting after
    the current step, so the saved state is exactly that of a step boundary; then it
    validates and saves like a finished sitting."""
    log = log or _print
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    previous = _stop_on_signals()
    try:
        return _train(cfg, log)
    finally:
        torch.set_num_threads(threads)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: Set by SIGTERM / SIGINT; the loop stops before its next step.
_STOP = threading.Event()


def _request_stop(signum: int, frame: Any) -> None:
    _STOP.set()


def _stop_on_signals() -> Dict[int, Any]:
    """SIGTERM / SIGINT -> _STOP (checked between steps); returns the old handlers."""
    _STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def _train(cfg: TrainConfig, log: Log) -> Run:
    device = torch.device(resolve_device(cfg.device))
    run, tokenizer = prepare(cfg, log)
    model = run.model.to(device).train()
    weights = cfg.aux_weights
    heads = None
    if weights.enabled:
        torch.manual_seed(cfg.seed + 1)  # the model's initialisation stays that of a plain run
        heads = AuxiliaryHeads(model.decoder.config.hidden_size, len(run.data.demos.cube_colors),
                               model.cfg.action_dim, patch_grid(model),
                               model.cfg.num_images).to(device)
    augment = Augment(cfg, model.cfg, np.random.default_rng([cfg.seed, 1]))
    sampler = BatchSampler(run.train_samples, run.data.prompt_lengths, cfg.batch_size,
                           cfg.seed, _repeats(run.data.demos, cfg))
    optimizer = make_optimizer(model, cfg, heads)
    val = _val_subset(run.val_samples, cfg.val_max_samples)
    loop = _Loop(cfg, log, len(val))
    first = 0
    if cfg.resume:
        first = load_state(cfg, model, heads, optimizer, sampler, augment, loop, log)
    state = _Resumable(model, heads, optimizer, sampler, augment, device)
    # SIGINT / SIGTERM set _STOP (see _stop_on_signals): keep_going ends at a step boundary
    for step in itertools.count(first):
        if not loop.keep_going(step):
            break
        batch = run.data.batch(next(sampler), augment).to(device)
        terms = train_step(model, optimizer, batch, learning_rate(step, loop.total, cfg),
                           cfg.grad_clip, cfg.label_weight, heads, weights)
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


@dataclass
class _Resumable:
    """Everything whose state a resumed run needs besides the loop's counters."""

    model: OpenVLAOFT
    heads: Optional[AuxiliaryHeads]
    optimizer: torch.optim.Optimizer
    sampler: BatchSampler
    augment: "Augment"
    device: torch.device


def _save_all(cfg: TrainConfig, run: Run, tokenizer: Any, state: _Resumable, loop: "_Loop",
              log: Log) -> None:
    """The resumable state, then the exported checkpoint folder (released format)."""
    save_state(cfg, state, loop)
    save(cfg, run, tokenizer, log)  # moves the model to the CPU in eval mode
    state.model.to(state.device).train()
    loop.saved()


def save_state(cfg: TrainConfig, state: _Resumable, loop: "_Loop") -> None:
    """Write state_dir/train_state.pt atomically (a crash mid-write keeps the last one)."""
    path = cfg.state_path
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    blob = {
        "format": 1, "step": loop.done, "total": loop.total,
        "config": dataclasses.asdict(cfg),
        "model": state.model.state_dict(),
        "heads": state.heads.state_dict() if state.heads is not None else None,
        "optimizer": state.optimizer.state_dict(),
        "sampler": state.sampler.state(),
        "augment_rng": state.augment.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "loop": loop.counters(),
    }
    tmp = path + ".tmp"
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_state(cfg: TrainConfig, model: OpenVLAOFT, heads: Optional[AuxiliaryHeads],
               optimizer: torch.optim.Optimizer, sampler: BatchSampler, augment: "Augment",
               loop: "_Loop", log: Log) -> int:
    """Restore a saved run into freshly built objects; returns the next step."""
    path = cfg.state_path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: no training state at {path!r}")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    saved = blob["config"]
    changed = sorted(k for k, v in dataclasses.asdict(cfg).items()
                     if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if "steps" in changed and saved.get("steps") is None and blob["total"] == cfg.steps:
        changed.remove("steps")  # a --minutes run resumed with its calibrated step count
    inexact = [k for k in _INEXACT_CHANGES if saved.get(k) != getattr(cfg, k)]
    if inexact:
        log(f"--resume with other {', '.join(inexact)}: the run continues, but is no longer "
            "bitwise that of an uninterrupted run")
    if changed:
        raise ValueError(f"--resume: {path} was saved with other settings: " + ", ".join(
            f"{k}={saved.get(k)!r} (now {getattr(cfg, k)!r})" for k in changed))
    model.load_state_dict(blob["model"])
    if heads is not None:
        heads.load_state_dict(blob["heads"])
    optimizer.load_state_dict(blob["optimizer"])
    sampler.restore(blob["sampler"])
    augment.rng.bit_generator.state = blob["augment_rng"]
    torch.set_rng_state(blob["torch_rng"])
    loop.restore(blob["loop"], blob["total"])
    log(f"resumed {path} at step {blob['step']}/{blob['total']} "
        f"({blob['loop']['minutes_before']:.1f} min trained before this sitting)")
    return int(blob["step"])


def _val_subset(samples: np.ndarray, limit: int) -> np.ndarray:
    if len(samples) <= limit:
        return samples
    return samples[np.linspace(0, len(samples) - 1, limit).round().astype(int)]


class _Loop:
    """Step count, time budget, calibration, save timing and log lines of the loop."""

    def __init__(self, cfg: TrainConfig, log: Log, val_count: int) -> None:
        self.cfg, self.log, self.val_count = cfg, log, val_count
        self.total = cfg.steps
        self.budget_s = cfg.minutes * 60.0 if cfg.minutes is not None else math.inf
        self.start = self.window_start = self.last_save = time.perf_counter()
        self.calib_start = self.start
        self.first = 0  # first step of this sitting
        self.done, self.seen, self.window_seen = 0, 0, 0
        self.minutes_before, self.seen_before, self.sittings = 0.0, 0, 1
        self.window: Dict[str, List[float]] = {}
        self.last_loss = math.nan

    def restore(self, counters: Dict[str, Any], total: Optional[int]) -> None:
        self.total = total
        self.first = self.done = int(counters["done"])
        self.minutes_before = float(counters["minutes_before"])
        self.seen_before = int(counters["seen"])
        self.sittings = int(counters["sittings"]) + 1

    def counters(self) -> Dict[str, Any]:
        return {"done": self.done, "seen": self.seen_before + self.seen,
                "minutes_before": self.minutes_before + self.elapsed() / 60.0,
                "sittings": self.sittings}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def keep_going(self, step: int) -> bool:
        if _STOP.is_set():
            self.log(f"stop requested (signal) at step {step}: validating and saving")
            return False
        if self.total is not None and step >= self.total:
            return False
        if self.cfg.stop_step is not None and step >= self.cfg.stop_step:
            self.log(f"stop step {self.cfg.stop_step} reached")
            return False
        if self.cfg.sitting_steps is not None and step - self.first >= self.cfg.sitting_steps:
            self.log(f"sitting of {self.cfg.sitting_steps} steps done at step {step}")
            return False
        if self.elapsed() + self._reserve() > self.budget_s:
            self.log(f"time budget of {self.cfg.minutes} min reached after {step} steps")
            return False
        return True

    def _reserve(self) -> float:
        """Seconds kept for validation (forward-only, ~half a sample's training time)."""
        if not self.seen:
            return 0.0
        return self.val_count * self.elapsed() / self.seen / 2

    def save_due(self) -> bool:
        return time.perf_counter() - self.last_save > self.cfg.save_every_minutes * 60.0

    def saved(self) -> None:
        self.last_save = time.perf_counter()

    def after_step(self, step: int, terms: Dict[str, float], size: int) -> None:
        if not all(math.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"training loss became {terms} at step {step}")
        self.done, self.seen = step + 1, self.seen + size
        self.window_seen += size
        for name, value in terms.items():
            self.window.setdefault(name, []).append(value)
        now = time.perf_counter()
        if step == self.first:
            self.calib_start = now  # the first step pays for allocation: not timed
        if self.total is None and step + 1 == self.cfg.calibration_steps:
            self._calibrate(now, step)
        if self.done % self.cfg.log_every == 0 or self.done == self.total:
            rate = self.window_seen / max(now - self.window_start, 1e-9)
            self.last_loss = float(np.mean(self.window["l1"]))
            aux = "".join(f" {k} {np.mean(v):.4f}" for k, v in self.window.items() if k != "l1")
            self.log(f"step {self.done}/{self.total or '?'} loss {self.last_loss:.4f}{aux} "
                     f"lr {learning_rate(step, self.total, self.cfg):.2e} "
                     f"{rate:.1f} samples/s elapsed {self.elapsed() / 60:.1f} min")
            self.window_start, self.window_seen, self.window = now, 0, {}

    def _calibrate(self, now: float, step: int) -> None:
        per_step = (now - self.calib_start) / step
        left = self.budget_s - self.elapsed() - self._reserve()
        self.total = step + 1 + max(0, int(left / per_step))
        self.log(f"calibrated: {per_step:.2f} s/step -> {self.total} steps fit in "
                 f"{self.cfg.minutes} min (pass --steps {self.total} to repeat this run "
                 "exactly)")

    def summary(self) -> Dict[str, Any]:
        elapsed = self.elapsed()
        if self.window.get("l1"):
            self.last_loss = float(np.mean(self.window["l1"]))
        minutes = self.minutes_before + elapsed / 60
        seen = self.seen_before + self.seen
        return {"steps": self.done, "samples_seen": seen, "train_minutes": minutes,
                "samples_per_s": self.seen / max(elapsed, 1e-9),
                "final_train_l1": self.last_loss, "sittings": self.sittings}


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
