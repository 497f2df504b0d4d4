"""From demonstrations to training batches: normalised data and encoded prompts
(``TrainingData``), augmentation, the resumable shuffled ``BatchSampler``, the split."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from specprune.model.modeling_vla import VLAConfig
from specprune.model.presets import ActionLayout
from specprune.model.processing import center_crop_box, normalize_proprio, pixel_values
from specprune.model.prompting import EncodedPrompt, encode_prompt
from specprune.train.auxiliary import (COLOUR_RULES, AuxLabels, model_rgb, named_index,
                                       patch_colour_labels)
from specprune.train.demo_dataset import Demos
from specprune.train.patch_boxes import box_patch_labels, to_model_frame
from specprune.train.train_config import TrainConfig


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
                   grid: int, need_colours: bool = True) -> None:
        """Build AuxLabels with every batch; ValueError when the demos lack what they need.

        What the heads read depends on the demos' cubes (``aux_roles``): pick_color's
        colour cubes (patch labels from pixel rules), or LIBERO's [object, target], whose
        patch labels come from the recorded ``obs/object_boxes`` (``patch_boxes``); without
        them only the position and target heads have labels (``need_colours`` False)."""
        if not self.demos.cube_names:
            raise ValueError("the auxiliary heads need the demos' cube colours and positions "
                             "(obs/cube_pos, attrs cube_colors): record the demos again with "
                             "specprune-demos")
        self.colours = self.demos.cube_colors if colour_cubes(self.demos) else None
        self.boxes = self.demos.object_boxes if self.colours is None else None
        if need_colours and self.colours is None and self.boxes is None:
            raise ValueError(
                "the colour and named heads and the attention loss need colour cubes every "
                f"demo shares (pick_color's {list(COLOUR_RULES)}) or obs/object_boxes in "
                f"every demo ({self.demos.boxes_missing} of {len(self.demos.names)} lack "
                "it: recorded before libero_demos wrote it); these demos name objects "
                f"(e.g. {self.demos.cube_names[0]}) that no pixel rule finds: use the "
                "position and target heads only")
        self.named, self.goal = aux_roles(self.demos)
        self.pre_grasp = _pre_grasp(self.demos)
        self.aux_settings = (min_pixels, target_scale, grid)
        if need_cubes and self.demos.cube_pos is None:
            raise ValueError("the target head needs obs/cube_pos in the demos")

    def aux_labels(self, samples: Sequence[int], pixels: torch.Tensor,
                   shifts: Optional[np.ndarray] = None) -> AuxLabels:
        """Labels of the auxiliary heads for ``samples`` whose pixel values are ``pixels``,
        their frames rolled by ``shifts`` (B, views, 2) (dy, dx) (None: not shifted)."""
        assert self.aux_settings is not None
        min_pixels, scale, grid = self.aux_settings
        idx = np.asarray(samples)
        views = self.cfg.num_images
        if self.colours is not None:
            rgb = model_rgb(pixels, views, self.cfg.image_means[0], self.cfg.image_stds[0])
            colour = patch_colour_labels(rgb, self.colours, grid, min_pixels)
        elif self.boxes is not None:  # LIBERO: the recorded object boxes
            colour = self._box_labels(idx, shifts, grid, min_pixels)
        else:  # no patch labels (LIBERO objects): only position / target heads run
            colour = torch.zeros(len(idx) * views, grid * grid, dtype=torch.long)
        named = self.named[self.demos.demo_of[idx]]
        if self.demos.cube_pos is not None:
            cube = self.demos.cube_pos[idx, self.goal[idx]]  # (B, 3), the proprio's frame
            target = (cube - self.demos.proprio[idx, :3]) * scale
        else:
            target = np.zeros((len(idx), 3))
        return AuxLabels(colour=colour.view(len(idx), -1), named=torch.as_tensor(named),
                         target=torch.tensor(target, dtype=torch.float32),
                         target_mask=torch.as_tensor(self.pre_grasp[idx]))

    def _box_labels(self, idx: np.ndarray, shifts: Optional[np.ndarray], grid: int,
                    min_pixels: int) -> torch.Tensor:
        """(B * views, grid * grid) labels from obs/object_boxes: 1 + k where cube k covers
        ``min_pixels`` of the patch or its centre lies in it (the object over its target)."""
        size = self.cfg.image_size
        top, side = center_crop_box(size, self.cfg.center_crop_scale)
        boxes = self.boxes[idx]  # (B, views, cubes, 4)
        rolled = np.zeros(boxes.shape[:2] + (1, 2)) if shifts is None else \
            np.asarray(shifts, dtype=np.float64)[:, :, None]
        model_boxes = to_model_frame(boxes, size, top, side, rolled)
        cover = min_pixels / (size / grid) ** 2
        labels = box_patch_labels(model_boxes, size, grid, cover)  # (B, views, P)
        return torch.from_numpy(labels.reshape(-1, grid * grid))

    def batch(self, samples: Sequence[int], augment: Optional["Augment"] = None) -> Batch:
        prompts = [self.prompts[self.demos.demo_of[i]] for i in samples]
        if len({len(p.ids) for p in prompts}) != 1:
            raise ValueError("a batch needs prompts of one length (group samples by length)")
        pixels, shifts = [], []
        for i in samples:
            frames = [torch.from_numpy(view[i]) for view in self.demos.frames]
            if augment is not None:
                frames = [augment(frame) for frame in frames]
                shifts.append(augment.shifts[-len(frames):])
            pixels.append(pixel_values(frames, self.cfg.image_means, self.cfg.image_stds,
                                       self.cfg.center_crop_scale, self.cfg.image_pipeline))
        chunks = self.actions[self.demos.chunk_index[np.asarray(samples)]]
        pixel_batch = torch.cat(pixels)
        aux = self.aux_labels(samples, pixel_batch, np.array(shifts) if shifts else None) \
            if self.aux_settings else None
        return Batch(pixels=pixel_batch,
                     proprio=torch.tensor(self.proprio[samples], dtype=torch.float32),
                     ids=torch.tensor([p.ids for p in prompts]), prompt=prompts[0],
                     target=torch.tensor(chunks, dtype=torch.float32), aux=aux)


def colour_cubes(demos: Demos) -> bool:
    """The demos' cubes are colour cubes every demo shares (pick_color's)."""
    return bool(demos.cube_colors) and all(c in COLOUR_RULES for c in demos.cube_colors)


def aux_roles(demos: Demos) -> Tuple[np.ndarray, np.ndarray]:
    """(per demo: the cube the instruction names, per sample: the cube the target head
    points at), indices into ``cube_pos``'s cubes.

    Colour cubes (pick_color): the cube whose colour the instruction names, on every frame.
    LIBERO's [object, target] pairs (libero_demos): the object until the first grasp label
    of the sample's part, then the place it goes to: the target head then says where the arm
    must go next, in both halves of every pick-and-place of the task."""
    if colour_cubes(demos):
        named = np.array([named_index(text, demos.cube_colors) for text in demos.instructions])
        return named, named[demos.demo_of]
    if demos.cube_names is None or any(len(n) != 2 for n in demos.cube_names):
        raise ValueError("the auxiliary heads need colour cubes or [object, target] pairs in "
                         f"attrs cube_colors, got {(demos.cube_names or [None])[0]}")
    return np.zeros(len(demos.names), int), np.where(_pre_grasp(demos), 0, 1)


def _pre_grasp(demos: Demos) -> np.ndarray:
    """(N,) bool: the sample's tick lies before the first 'close the gripper' label of its
    part of the demo (``action_part``; the whole demo without it), over every tick's label,
    also those without frames."""
    rows = np.arange(len(demos.actions))
    owner, part = demos.action_demo, demos.action_part  # read_demos fills both
    segment = owner * (int(part.max(initial=0)) + 1) + part  # (demo, part) of each row
    first_row = np.full(len(demos.names), len(rows))
    np.minimum.at(first_row, owner, rows)
    tick = rows - first_row[owner]
    first = np.full(int(segment.max(initial=0)) + 1, np.iinfo(np.int64).max)
    hits = np.flatnonzero(demos.actions[:, -1] > 0)
    np.minimum.at(first, segment[hits], tick[hits])
    sample_rows = first_row[demos.demo_of] + demos.frame_index
    return demos.frame_index < first[segment[sample_rows]]


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
        self.shifts: List[Tuple[int, int]] = []  # (dy, dx) of each call: labels follow

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """(S, S, 3) uint8 -> (S, S, 3) uint8."""
        dy = dx = 0
        if self.shift:
            dy, dx = (int(d) for d in self.rng.integers(-self.shift, self.shift + 1, size=2))
            frame = torch.roll(frame, shifts=(dy, dx), dims=(0, 1))
        self.shifts = self.shifts[-63:] + [(dy, dx)]
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


def split_sources(counts: Sequence[int], val_demos: int, seed: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """(train, validation) demo indices over sources read one after another (``counts``
    demos each): the held-out demos are the first source's, chosen as ``split_demos``
    chooses them when it is read alone (one source: exactly ``split_demos``), so a fine-tune
    on more demos (a second folder) holds out exactly what the run it starts from held out;
    later sources train only."""
    train, val = split_demos(int(counts[0]), val_demos, seed)
    more = np.arange(int(counts[0]), int(sum(counts)))
    return np.concatenate([train, more]), val


def split_demos(num_demos: int, val_demos: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, validation) demo indices; the held-out ones are chosen by ``seed``."""
    if val_demos >= num_demos:
        raise ValueError(f"TrainConfig.val_demos={val_demos} leaves no training demo "
                         f"(the file has {num_demos})")
    perm = np.random.default_rng(seed).permutation(num_demos)
    return np.sort(perm[val_demos:]), np.sort(perm[:val_demos])
