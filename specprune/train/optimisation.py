"""One optimisation step of the OFT recipe: the policy's unpruned pass with what the
auxiliary losses read, the loss terms, AdamW, the learning-rate schedule, validation."""
from __future__ import annotations

import math
import random
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from specprune.model.modeling_vla import OpenVLAOFT, SequenceLayout
from specprune.prune.decoder import run_decoder
from specprune.prune.scoring import batched_query_attention, column_scores
from specprune.train.auxiliary import AuxiliaryHeads, AuxWeights, Features, LayerInputs
from specprune.train.batches import Batch, TrainingData
from specprune.train.token_drop import TokenDrop
from specprune.train.train_config import TrainConfig


def forward(model: OpenVLAOFT, batch: Batch, weights: Optional[AuxWeights] = None,
            drop: Optional[TokenDrop] = None, step: int = 0) -> Features:
    """The policy's pass, exposing what the enabled auxiliary losses read: unpruned, or
    with ``drop`` as training step ``step`` draws it (token_drop.py)."""
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    patches = model.encode_images(batch.pixels)  # (B, views * P, D)
    embeds = model.build_sequence(patches, batch.proprio, batch.ids)  # (B, T, D)
    n = model.num_layers
    captured = weights.captured_layers(n) if weights is not None else ()
    missing = [i for i in captured + (drop.layers if drop is not None and drop.enabled else ())
               if i >= model.num_layers]
    if missing:
        raise ValueError(f"decoder layers {missing} do not exist ({model.num_layers} layers)")
    capture = LayerInputs(captured) if captured else None
    hook = drop.hook(step, layout, capture) if drop is not None else capture
    state = run_decoder(model.decoder, embeds, hook)
    start = layout.present_head_start(state.hidden.shape[1])
    head = state.hidden[:, start:start + layout.num_head_positions]
    feats = Features(actions=model.predict_normalized(head), patches=patches,
                     visual_hidden=None, head_hidden=head)
    if capture is not None and weights is not None:
        _read_captured(model, layout, capture, weights, feats)
    return feats


def _read_captured(model: OpenVLAOFT, layout: SequenceLayout, capture: LayerInputs,
                   weights: AuxWeights, feats: Features) -> None:
    """Fill in what the named head and the attention loss read from the captured layer
    inputs; after a token drop, of the visual tokens still present there."""

    def ids(positions: torch.Tensor, now: slice) -> torch.Tensor:
        """(1 or B, n) visual ids of the present visual tokens; positions are (T,), or
        (B, T) after a drop that kept other tokens in each sample (token_drop.py)."""
        return positions.view(-1, positions.shape[-1])[:, now] - layout.visual_start

    if weights.named > 0:
        hidden, _, _, positions = capture.states[weights.named_layer]
        present = layout.present_visual(hidden.shape[1])
        feats.visual_hidden = hidden[:, present]
        if feats.visual_hidden.shape[1] < layout.num_visual:  # after a token drop
            feats.visual_ids = ids(positions, present)
    if weights.attention > 0:
        queries = torch.tensor(layout.query_positions, device=feats.patches.device)
        feats.text_to_visual = {}
        for i in weights.attention_indices(model.num_layers):
            hidden, cos, sin, positions = capture.states[i]
            present = layout.present_visual(hidden.shape[1])
            # drops remove visual tokens only: the query rows sit alike in every sample
            rows = torch.searchsorted(positions.view(-1, positions.shape[-1])[0], queries)
            probs = batched_query_attention(model.decoder.layers[i], hidden, cos, sin, rows)
            scores = column_scores(probs, present)  # (B, present): SpecPrune's Eq. 1
            if scores.shape[1] < layout.num_visual:  # dropped tokens get no attention
                scores = scores.new_zeros(scores.shape[0], layout.num_visual).scatter(
                    1, ids(positions, present).expand_as(scores), scores)
            feats.text_to_visual[i] = scores  # (B, V*P)


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
               heads: Optional[AuxiliaryHeads] = None, weights: Optional[AuxWeights] = None,
               drop: Optional[TokenDrop] = None, step: int = 0) -> Dict[str, torch.Tensor]:
    """name -> loss: ``l1`` (the OFT action loss) plus the enabled auxiliary terms, on the
    pass that ``drop`` draws for training step ``step`` (unpruned without it)."""
    use_aux = heads is not None and weights is not None and weights.enabled
    feats = forward(model, batch, weights if use_aux else None, drop, step)
    terms = {"l1": action_loss(feats.actions, batch.target, label_weight)}
    if use_aux:
        if batch.aux is None:
            raise ValueError("auxiliary heads enabled but the batch carries no labels")
        terms.update(heads.losses(feats, batch.aux, weights))
    return terms


def train_step(model: OpenVLAOFT, optimizer: torch.optim.Optimizer, batch: Batch,
               lr: float, grad_clip: float, label_weight: float = 0.0,
               heads: Optional[AuxiliaryHeads] = None,
               weights: Optional[AuxWeights] = None, drop: Optional[TokenDrop] = None,
               step: int = 0) -> Dict[str, float]:
    """One optimiser step on the sum of the loss terms; returns each term's value."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    terms = loss_terms(model, batch, label_weight, heads, weights, drop, step)
    loss = torch.stack(list(terms.values())).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return {name: float(value.detach()) for name, value in terms.items()}
