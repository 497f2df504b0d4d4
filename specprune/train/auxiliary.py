"""Training-only auxiliary heads that bind the action slots to the named object.

Trained from scratch on a few hundred demos, the OpenVLA-OFT layout learns the phases of
``pick_color`` but not *which* cube to reach: its action slots ignore the colour word and
a single projected patch token barely knows where it sits (the measured diagnosis is in
the README). Four small heads, each a LayerNorm and a Linear, add the missing pressure
during training and are dropped at export, so the deployed architecture and checkpoint
folder stay exactly OpenVLA-OFT's:

1. ``position``: each projected patch token (decoder input) -> its own (row, col) in
   [-1, 1] (MSE), so a token carries where it is.
2. ``colour``: each projected patch token -> which cube colour it shows, or none
   (cross-entropy over 1 + cubes classes).
3. ``named``: the visual hidden states entering decoder layer ``named_layer`` -> "this
   patch shows the cube the instruction names" (BCE with ``pos_weight``): the decoder must
   mix the colour word into the patches early.
4. ``target``: the first chunk step's ``action_dim`` head states (final norm) -> the named
   cube's position relative to the end effector in the robot base frame, metres x
   ``target_scale`` (L1), on frames before the first grasp (or on every frame). Its
   readout is a LayerNorm + Linear (``linear``) or parameter-free (``fixed``: the mean of
   the first three coordinates of those states). The fixed readout
   makes the decoder write the position at unit scale into fixed coordinates; a learnt
   readout can instead find it in a low-variance direction that a ridge regression
   recovers (R^2 0.97 for y on stage A's head states) but an L1-trained head learns only
   very slowly (on those frozen states: y prediction std 0.06-0.14 against a label std
   0.81 after 600-2000 steps; README, "Why B").

5. ``attention`` (a loss, no head): the share of the task-text query rows' attention
   (mean over heads and rows, the score SpecPrune ranks visual tokens by) that falls on the
   named cube's patches at the scoring layers, pushed up (-log share); with
   ``attention_target`` on the patches of the object and of the place it goes to (LIBERO's
   [object, target] pairs), both of which the instruction names. A from-scratch model
   has no reason to make its text tokens look at the named object, which SpecPrune's
   text -> visual scores assume (a pretrained VLM brings it from pre-training).

Patch colour labels come from the model-input pixels (after augmentation and the centre
crop, so they move with the shift augmentation exactly as the tokens do) with per-colour
dominance rules for the task's saturated cube colours; cube positions are the simulator's
privileged state recorded with the demos (``obs/cube_pos``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from specprune.prune.decoder import DecoderState

TARGET_READOUTS = ("linear", "fixed")

#: colour -> (dominant channel, its minimum 0-255 value, ratio over the other channels).
#: Checked on rendered pick_color frames: each 4.2 cm cube covers ~300-600 px of a view.
COLOUR_RULES: Dict[str, Tuple[int, float, float]] = {
    "red": (0, 50.0, 2.0),
    "green": (1, 40.0, 1.5),
    "blue": (2, 50.0, 1.6),
}


def named_index(instruction: str, colors: Sequence[str]) -> int:
    """Index in ``colors`` of the one colour the instruction names (ValueError otherwise)."""
    words = set(instruction.lower().replace(",", " ").replace(".", " ").split())
    hits = [i for i, c in enumerate(colors) if c in words]
    if len(hits) != 1:
        raise ValueError(f"instruction {instruction!r} names {len(hits)} of the colours "
                         f"{list(colors)}; the auxiliary labels need exactly one")
    return hits[0]


def colour_masks(rgb: torch.Tensor, colors: Sequence[str]) -> torch.Tensor:
    """(B, 3, S, S) 0-255 float -> (B, len(colors), S, S) bool pixel masks."""
    out = []
    for name in colors:
        if name not in COLOUR_RULES:
            raise ValueError(f"no pixel rule for colour {name!r} (known: {list(COLOUR_RULES)})")
        channel, floor, ratio = COLOUR_RULES[name]
        others = torch.cat([rgb[:, :channel], rgb[:, channel + 1:]], dim=1).amax(dim=1)
        value = rgb[:, channel]
        out.append((value > floor) & (value > ratio * others))
    return torch.stack(out, dim=1)


def patch_colour_labels(rgb: torch.Tensor, colors: Sequence[str], grid: int,
                        min_pixels: int) -> torch.Tensor:
    """(B, 3, S, S) 0-255 -> (B, grid * grid) long, row-major: 0 = no cube, 1 + i =
    ``colors[i]`` (the colour with most pixels in the patch, if at least ``min_pixels``)."""
    size = rgb.shape[-1]
    if size % grid:
        raise ValueError(f"image size {size} is not a multiple of the patch grid {grid}")
    side = size // grid
    counts = F.avg_pool2d(colour_masks(rgb, colors).float(), side) * side * side  # (B,n,g,g)
    best, which = counts.max(dim=1)
    labels = torch.where(best >= min_pixels, which + 1, torch.zeros_like(which))
    return labels.flatten(1)


def model_rgb(pixels: torch.Tensor, views: int, mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
    """Pixel values (B, 6 * views, S, S) -> the first backbone's input as 0-255 RGB
    (B * views, 3, S, S), view-major per sample."""
    b, _, s, _ = pixels.shape
    first = pixels.view(b, views, 6, s, s)[:, :, :3].reshape(b * views, 3, s, s)
    m = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    d = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (first * d + m) * 255.0


@dataclass
class AuxLabels:
    """Per-batch labels of the auxiliary heads."""

    colour: torch.Tensor  # (B, views * P) long, 0 = none, 1 + i = colour i
    named: torch.Tensor  # (B,) long, index of the named colour
    target: torch.Tensor  # (B, 3) named cube - end effector, base frame, m * target_scale
    target_mask: torch.Tensor  # (B,) bool: a pre-grasp frame

    def to(self, device: torch.device) -> "AuxLabels":
        return AuxLabels(self.colour.to(device), self.named.to(device),
                         self.target.to(device), self.target_mask.to(device))


@dataclass(frozen=True)
class AuxWeights:
    """Loss weights (0 disables a head) and the settings of the named head."""

    position: float = 0.0
    colour: float = 0.0
    named: float = 0.0
    target: float = 0.0
    named_pos_weight: float = 10.0
    named_layer: int = 2
    target_readout: str = "linear"  # or "fixed"
    target_all_frames: bool = False
    attention: float = 0.0
    attention_layers: Tuple[int, ...] = (0, 1, -1)
    attention_target: bool = False  # the share counts the target's patches (label 2) too

    @property
    def enabled(self) -> bool:
        return any(w > 0 for w in (self.position, self.colour, self.named, self.target,
                                   self.attention))

    def captured_layers(self, num_layers: int) -> Tuple[int, ...]:
        """Decoder layers whose inputs the enabled losses read (negative: from the end)."""
        layers = set()
        if self.named > 0:
            layers.add(self.named_layer)
        if self.attention > 0:
            layers.update(self.attention_indices(num_layers))
        return tuple(sorted(layers))

    def attention_indices(self, num_layers: int) -> Tuple[int, ...]:
        """The attention loss's layers as absolute indices (negative: from the end)."""
        return tuple(sorted({i % num_layers for i in self.attention_layers}))


@dataclass
class Features:
    """What one forward pass exposes to the losses."""

    actions: torch.Tensor  # (B, chunk, action_dim) normalised
    patches: torch.Tensor  # (B, views * P, D) projected patch tokens
    visual_hidden: Optional[torch.Tensor]  # (B, n, D) entering named_layer
    head_hidden: torch.Tensor  # (B, chunk * action_dim, D) final norm
    #: layer -> (B, views * P) attention of the task-text rows to each visual token
    text_to_visual: Optional[Dict[int, torch.Tensor]] = None
    #: (1 or B, n) visual ids of visual_hidden's tokens after a token drop (per sample
    #: where samples kept different tokens); None: all V*P of them
    visual_ids: Optional[torch.Tensor] = None


class LayerInputs:
    """Decoder hook that keeps the state entering some layers (selects nothing):
    layer -> (hidden (B, T, D), cos, sin, positions (T,) original sequence positions)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = set(indices)
        self.states: Dict[int, Tuple[torch.Tensor, ...]] = {}

    def before_layer(self, index: int, layer: nn.Module, state: DecoderState) -> None:
        if index in self.indices:
            self.states[index] = (state.hidden, state.cos, state.sin, state.positions)


def fixed_target_readout(head_hidden: torch.Tensor, action_dim: int) -> torch.Tensor:
    """The ``fixed`` target readout (B, 3): coordinates 0-2 of the first chunk step's
    ``action_dim`` head states (final norm, so ~unit scale), averaged. Parameter-free, so an
    exported checkpoint still carries it (specprune_ros/eval/target_readout.py reads it)."""
    return head_hidden[:, :action_dim, :3].mean(dim=1)


def _head(dim_in: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, dim_out))


class AuxiliaryHeads(nn.Module):
    """The four training-only heads (see the module docstring)."""

    def __init__(self, dim: int, num_colours: int, action_dim: int, grid: int,
                 views: int) -> None:
        super().__init__()
        self.position = _head(dim, 2)
        self.colour = _head(dim, 1 + num_colours)
        self.named = _head(dim, 1)
        self.target = _head(action_dim * dim, 3)
        self.action_dim = action_dim
        axis = torch.linspace(-1.0, 1.0, grid)
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")
        cell = torch.stack([rows.flatten(), cols.flatten()], dim=-1)  # (P, 2)
        self.register_buffer("cells", cell.repeat(views, 1), persistent=False)  # (V*P, 2)

    def losses(self, feats: Features, labels: AuxLabels,
               weights: AuxWeights) -> Dict[str, torch.Tensor]:
        """Weighted loss terms of the enabled heads (name -> scalar)."""
        out: Dict[str, torch.Tensor] = {}
        # patches showing the cube the instruction names (named head, attention loss)
        is_named = (labels.colour == (labels.named + 1).unsqueeze(1)).float()
        if weights.position > 0:
            pred = self.position(feats.patches)  # (B, V*P, 2)
            out["position"] = weights.position * F.mse_loss(
                pred, self.cells.expand_as(pred))
        if weights.colour > 0:
            logits = self.colour(feats.patches)  # (B, V*P, 1 + colours)
            out["colour"] = weights.colour * F.cross_entropy(
                logits.flatten(0, 1), labels.colour.flatten())
        if weights.named > 0:
            if feats.visual_hidden is None:
                raise ValueError("the named head needs the visual hidden states")
            logit = self.named(feats.visual_hidden).squeeze(-1)  # (B, n)
            pos_weight = torch.tensor(weights.named_pos_weight, device=logit.device)
            shown = is_named if feats.visual_ids is None else is_named.gather(
                1, feats.visual_ids.expand(is_named.shape[0], -1))
            out["named"] = weights.named * F.binary_cross_entropy_with_logits(
                logit, shown, pos_weight=pos_weight)
        if weights.target > 0:
            if weights.target_readout == "fixed":
                pred = fixed_target_readout(feats.head_hidden, self.action_dim)
            else:  # the first chunk step's action_dim states (B, action_dim * D)
                pred = self.target(feats.head_hidden[:, :self.action_dim].flatten(1))
            err = (pred - labels.target).abs().mean(dim=1)  # (B,)
            if weights.target_all_frames:
                out["target"] = weights.target * err.mean()
            else:
                mask = labels.target_mask.float()
                out["target"] = weights.target * (err * mask).sum() / mask.sum().clamp(min=1.0)
        if weights.attention > 0:
            if not feats.text_to_visual:
                raise ValueError("the attention loss needs the text -> visual scores")
            named_parts = is_named
            if weights.attention_target:  # [object, target] boxes: 1 object, 2 target
                named_parts = torch.maximum(is_named, (labels.colour == 2).float())
            has = (named_parts.sum(dim=1) > 0).float()  # (B,) a named part is in view
            terms = []
            for scores in feats.text_to_visual.values():  # (B, V*P)
                share = (scores * named_parts).sum(1) / scores.sum(1).clamp_min(1e-12)
                terms.append((-torch.log(share + 1e-6) * has).sum() / has.sum().clamp(min=1.0))
            out["attention"] = weights.attention * torch.stack(terms).mean()
        return out
