"""The settings of one training run (``TrainConfig``, validated in one place) and which of
them a resumed run may change."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from specprune.config import check_value, documented_field, int_as_float
from specprune.model.presets import PRESETS
from specprune.train.auxiliary import TARGET_READOUTS, AuxWeights
from specprune.train.token_drop import TokenDrop


def _spec(default: Any, doc: str, lo: Optional[float] = None, hi: Optional[float] = None,
          kind: Optional[type] = None) -> Any:
    """A TrainConfig field; ``kind`` is its type where the default (None) does not say."""
    return documented_field(default, doc, lo, hi, type=kind or type(default))


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run (validated; ValueError names the field)."""

    demos: str = _spec(
        "", "Demonstration HDF5 (robomimic-style, see demo_dataset.py), a folder of shards or "
        "a comma-separated list of both (demo_dataset.demo_files).")
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
        "file comes before); with steps set it only stops early (then validates, saves); "
        "without, the calibrated step count is then run in full (it may overrun on a busy "
        "machine, never stop short: the same steps as --steps N).",
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
    val_demos: int = _spec(4, "Demos held out (chosen by seed) for the final validation L1; "
                           "with comma-separated demos, from the first part only, as when it "
                           "is read alone (batches.split_sources).", 0, 10**6)
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
    aux_attention_target: bool = _spec(
        False, "The attention loss's share counts the place the instruction names too: "
        "LIBERO's [object, target] pairs' target patches (patch label 2) beside the object's. "
        "SpecPrune keeps what the task text attends to, and an instruction names both; "
        "refused on colour-cube demos (pick_color), which label no target.", kind=bool)
    aux_attention_layers: str = _spec(
        "0,1,-1", "Comma-separated decoder layers of the attention loss (SpecPrune scores "
        "V_local at 0 and 1, V_global at global_score_layers; -1: the last).")
    token_drop: float = _spec(
        0.0, "Token-drop augmentation (train/token_drop.py; help for the pruner, label any "
        "policy trained with it): the share of training steps whose decoder pass drops a "
        "random subset of the visual tokens before one of token_drop_layers. 0 disables.",
        0.0, 1.0)
    token_drop_keep_min: float = _spec(
        0.15, "The kept share of the visual tokens in a token-drop step is uniform in "
        "[token_drop_keep_min, 1] (SpecPrune keeps about 22 % at the default K, 45 % at "
        "keep_scale 2).", 0.01, 1.0)
    token_drop_layers: str = _spec(
        "2", "Comma-separated decoder layers before which a token-drop step drops (one drawn "
        "uniformly per step; 2: where FastV and random dropping act and SpecPrune's static "
        "selection ends; SpecPrune also drops to its candidates before layer 1).")
    token_drop_scored: float = _spec(
        0.0, "Share of the token-drop steps that keep, in each sample and view, the visual "
        "tokens SpecPrune's V_local ranks first (Eq. 1 at layers 0 and 1) instead of random "
        "ones: training for SpecPrune's own selection (help for the pruner; label it). Needs "
        "token_drop_layers >= 2.", 0.0, 1.0)
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
        _layer_list(self.aux_attention_layers, "aux_attention_layers")
        drop_layers = _layer_list(self.token_drop_layers, "token_drop_layers")
        if not drop_layers or min(drop_layers) < 0:
            raise ValueError(f"TrainConfig.token_drop_layers={self.token_drop_layers!r} needs "
                             "one or more layer indices >= 0")
        if self.token_drop_scored > 0 and min(drop_layers) < 2:
            raise ValueError(f"TrainConfig.token_drop_scored needs token_drop_layers >= 2 "
                             f"(got {self.token_drop_layers!r}): a scored drop ranks by the "
                             "attention of layers 0 and 1")
        if self.aux_attention_target and self.aux_attention <= 0:
            raise ValueError("TrainConfig.aux_attention_target needs aux_attention > 0 (it "
                             "changes what that loss counts)")
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
                          self.aux_attention,
                          _layer_list(self.aux_attention_layers, "aux_attention_layers"),
                          self.aux_attention_target)

    @property
    def token_drop_settings(self) -> TokenDrop:
        return TokenDrop(self.token_drop, self.token_drop_keep_min,
                         _layer_list(self.token_drop_layers, "token_drop_layers"), self.seed,
                         self.token_drop_scored)

    @property
    def state_path(self) -> str:
        folder = self.state_dir or os.path.join("runs", os.path.basename(os.path.normpath(
            self.out)))
        return os.path.join(folder, "train_state.pt")


def _layer_list(text: str, field: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"TrainConfig.{field}={text!r} is not a comma-separated list of "
                         "layer indices") from None


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
