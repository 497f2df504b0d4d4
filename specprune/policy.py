"""SpecPrunePolicy: one object per robot, owning every piece of cross-step state.

``step(obs)`` preprocesses, runs the vision encoder, lets the action-aware controller
pick the mode, selects tokens (V_global U V_dynamic U V_local), runs the pruned decoder
and the action head, and returns an ActionChunk plus StepStats. ``update_config`` is
thread-safe and applies at the next step; ``reset`` clears the cross-step state.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from specprune.config import PruneConfig
from specprune.prune.controller import ActionAwareController, lookback_steps, motion_from_action
from specprune.prune.decoder import DecoderState, LayerHook, run_decoder
from specprune.prune.frame_compare import (FramePatches, changed_mask, frame_similarity,
                                           not_static_mask)
from specprune.model.loading import load_model, place_model, resolve_device, resolve_dtype
from specprune.model.modeling_vla import OpenVLAOFT, SequenceLayout
from specprune.model.presets import ActionLayout
from specprune.model.processing import (check_image, check_proprio, normalize_proprio,
                                        pixel_values, resize_frame, unnormalize_actions)
from specprune.model.prompting import EncodedPrompt, encode_prompt
from specprune.prune.pruning_hooks import SpecPruneHook, combine_global_scores
from specprune.prune.selection import even_grid, topk_per_view
from specprune.types import MODE_FINE, MODE_OFF, ActionChunk, Observation, StepStats


class NonFiniteActionError(RuntimeError):
    """The model produced NaN/Inf actions: nothing may be sent to the robot."""


@dataclass
class _Prepared:
    frames: FramePatches  # every view stacked: the model-size uint8 (V, S, S, 3) frame
    embeds: torch.Tensor  # (1, T, D)
    layout: SequenceLayout
    vision_s: float


@dataclass(frozen=True)
class Selection:
    fine: bool
    global_mask: torch.Tensor
    dynamic_mask: torch.Tensor
    lookback: int
    cover_mask: Optional[torch.Tensor] = None  # V_cover (coverage_k), None when off


class SpecPrunePolicy:
    def __init__(self, model: OpenVLAOFT, tokenizer: Any, statistics: Dict[str, Any],
                 layout: ActionLayout, config: Optional[PruneConfig] = None,
                 device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.model = place_model(model, device, dtype).eval()
        self.tokenizer = tokenizer
        self.statistics = statistics
        self.layout = layout
        self.device, self.dtype = torch.device(device), dtype
        # GPU kernels are asynchronous: synchronise before reading a timer there
        self._sync = torch.cuda.synchronize if self.device.type == "cuda" else _no_sync
        self._config = config or PruneConfig()
        self._lock = threading.Lock()
        self._prompts: Dict[str, EncodedPrompt] = {}
        self.controller = ActionAwareController()
        self.reset()

    # --- configuration ------------------------------------------------------------
    @property
    def config(self) -> PruneConfig:
        with self._lock:
            return self._config

    def update_config(self, config: Optional[PruneConfig] = None, **changes: Any) -> PruneConfig:
        """Replace or patch the config (validated); takes effect at the next step."""
        with self._lock:
            new = (config or self._config).updated(**changes) if changes else config
            if new is None:
                raise ValueError("update_config needs a PruneConfig or field=value changes")
            self._config = new
        if self._frames.maxlen != new.lookback_max_steps + 1:  # keep the newest frames
            self._frames = collections.deque(self._frames, maxlen=new.lookback_max_steps + 1)
        return new

    def reset(self) -> None:
        """Forget the episode: frame history, previous scores, controller mode."""
        cfg = self.config
        self._frames: Deque[FramePatches] = collections.deque(
            maxlen=cfg.lookback_max_steps + 1)
        self._global_scores: Optional[torch.Tensor] = None
        self._last_action: Optional[np.ndarray] = None
        self.controller.reset()

    # --- one control step ---------------------------------------------------------
    @torch.inference_mode()
    def step(self, obs: Observation) -> Tuple[ActionChunk, StepStats]:
        cfg = self.config
        t0 = time.perf_counter()
        prep = self._prepare(obs)
        stats = StepStats(vision_ms=prep.vision_s * 1e3)
        motion = obs.ee_motion if obs.ee_motion is not None else (
            motion_from_action(self._last_action, cfg) if self._last_action is not None
            else None)
        decision = self.controller.update(motion, cfg)
        self._sync()
        t_sel = time.perf_counter()
        hook = self._make_hook(prep, cfg, decision.mode == MODE_FINE, motion, stats)
        pre_selection_s = time.perf_counter() - t_sel
        t_llm = time.perf_counter()
        state = run_decoder(self.model.decoder, prep.embeds, hook)
        self._sync()
        stats.llm_ms = (time.perf_counter() - t_llm) * 1e3
        chunk, stats.head_ms = self._head(state, prep.layout, obs.stamp)
        stats.mode = MODE_OFF
        stats.visual_tokens_per_layer = _visual_counts(state.tokens_per_layer, prep.layout)
        if isinstance(hook, SpecPruneHook):
            self._after_pruned_pass(hook, stats, prep.layout, pre_selection_s)
            stats.mode = decision.mode
            chunk.replan = stats.replan = decision.switched_to_fine and cfg.replan_on_fine_entry
        elif getattr(hook, "kept_mask", None) is not None:  # a baseline's one-shot drop
            stats.kept_masks = view_masks(hook.kept_mask, prep.layout)
        stats.tokens_per_layer = state.tokens_per_layer
        stats.visual_tokens_total = prep.layout.num_visual
        self._frames.append(prep.frames)
        self._last_action = chunk.actions[0]
        self._sync()
        stats.total_ms = (time.perf_counter() - t0) * 1e3
        return chunk, stats

    def _prepare(self, obs: Observation) -> _Prepared:
        start = time.perf_counter()
        cfg = self.model.cfg
        if len(obs.images) != cfg.num_images:
            raise ValueError(f"expected {cfg.num_images} camera views, got {len(obs.images)}")
        frames = [resize_frame(check_image(img, v), cfg.image_size, cfg.image_pipeline)
                  for v, img in enumerate(obs.images)]
        pixels = pixel_values(frames, cfg.image_means, cfg.image_stds, cfg.center_crop_scale,
                              cfg.image_pipeline)
        prompt = self._prompt(obs.instruction)
        proprio = None
        if cfg.proprio_dim:
            raw = check_proprio(obs.proprio, cfg.proprio_dim)
            norm = normalize_proprio(raw, self.statistics["proprio"], self.layout.normalization)
            # via float32, as the reference (torch.Tensor(proprio).to(dtype)): float64 straight
            # to bfloat16 rounds some values the other way
            proprio = torch.tensor(norm, dtype=torch.float32).to(self.device, self.dtype)[None]
        ids = torch.tensor([prompt.ids], device=self.device)
        patches = self.model.encode_images(pixels.to(self.device, self.dtype))
        embeds = self.model.build_sequence(patches, proprio, ids)
        layout = self.model.layout(len(prompt.ids), prompt.task_ids)
        patch = self.model.vision_backbone.patch_size
        return _Prepared(FramePatches(torch.stack(frames), patch), embeds, layout,
                         time.perf_counter() - start)

    def _make_hook(self, prep: _Prepared, cfg: PruneConfig, fine: bool, motion,
                   stats: StepStats) -> Optional[LayerHook]:
        """The decoder hook of this step (None: the unpruned pass)."""
        if not cfg.enabled:
            return None
        selection = self._select(prep, cfg, fine, motion)
        _fill_selection_stats(stats, selection, motion)
        hook = SpecPruneHook(cfg, prep.layout, self.model.num_layers, selection.fine,
                             selection.global_mask, selection.dynamic_mask, selection.cover_mask)
        stats.n_cover = hook.cover_count  # counted once, by the hook
        return hook

    def _prompt(self, instruction: str) -> EncodedPrompt:
        if instruction not in self._prompts:
            self._prompts[instruction] = encode_prompt(
                self.tokenizer, instruction, self.model.cfg.empty_token_id)
        return self._prompts[instruction]

    def _select(self, prep: _Prepared, cfg: PruneConfig, fine: bool,
                motion) -> Selection:
        per_view, views = prep.layout.patches_per_view, prep.layout.num_views
        size = prep.layout.num_visual
        global_mask = (torch.zeros(size, dtype=torch.bool) if self._global_scores is None
                       else topk_per_view(self._global_scores, per_view,
                                          [cfg.scaled(cfg.global_k)] * views))
        speed = motion.trans_speed if motion is not None else 0.0
        lookback = lookback_steps(speed, cfg)
        if not self._frames:  # no earlier frame: nothing is known to be static, so every
            # patch stays at this step's static stage (both V_dynamic rules; the ICML rule
            # kept none here: V_local alone, ~10 % of the visual tokens, on the step that
            # seeds V_global). Layer pruning still applies.
            dynamic_mask = torch.ones(size, dtype=torch.bool)
        else:
            past = self._frames[-min(lookback, len(self._frames))]
            sim = frame_similarity(prep.frames, past)
            dynamic_mask = (
                not_static_mask(sim, cfg.static_k_fine if fine else cfg.static_k_coarse,
                                cfg.static_similarity) if cfg.dynamic_from_static
                else changed_mask(sim, cfg.scaled(cfg.dynamic_k), cfg.static_similarity))
        cover = (even_grid(per_view, (cfg.scaled(cfg.coverage_k),) * views, self.device)
                 if cfg.coverage_k else None)
        return Selection(fine, global_mask.to(self.device), dynamic_mask.to(self.device),
                         lookback, cover)

    def _head(self, state: DecoderState, layout: SequenceLayout,
              stamp: float) -> Tuple[ActionChunk, float]:
        start = time.perf_counter()
        positions = torch.arange(layout.head_start, layout.head_start +
                                 layout.num_head_positions, device=state.positions.device)
        hidden = state.hidden[:, state.index_of(positions)]
        normalized = self.model.predict_normalized(hidden)[0].float().cpu().numpy()
        if not np.all(np.isfinite(normalized)):
            raise NonFiniteActionError("the model produced non-finite actions")
        actions = unnormalize_actions(normalized, self.statistics["action"],
                                      self.layout.normalization)
        chunk = ActionChunk(actions=actions, normalized=normalized, stamp=stamp)
        return chunk, (time.perf_counter() - start) * 1e3

    def _after_pruned_pass(self, hook: SpecPruneHook, stats: StepStats,
                           layout: SequenceLayout, pre_selection_s: float) -> None:
        trace = hook.trace
        self._global_scores = combine_global_scores(trace.global_scores)
        stats.selection_ms = (pre_selection_s + trace.selection_s) * 1e3
        stats.n_local = trace.n_local
        stats.scored_layers = trace.scored_layers
        stats.static_layer = hook.cfg.local_first_layer + 2
        if trace.static_mask is not None:
            stats.n_static_kept = int(trace.static_mask.sum())
            stats.kept_masks = view_masks(trace.static_mask, layout)


def view_masks(mask: torch.Tensor, layout: SequenceLayout) -> List[np.ndarray]:
    """A (V,) kept-visual-token mask as one (grid, grid) bool array per view."""
    grid = int(round(layout.patches_per_view ** 0.5))
    return [m.reshape(grid, grid).cpu().numpy() for m in mask.view(layout.num_views, -1)]


def _fill_selection_stats(stats: StepStats, selection: Selection, motion) -> None:
    stats.n_global = int(selection.global_mask.sum())
    stats.n_dynamic = int(selection.dynamic_mask.sum())
    stats.lookback_steps = selection.lookback
    if motion is not None:
        stats.trans_speed, stats.rot_speed = motion.trans_speed, motion.rot_speed


def _visual_counts(tokens_per_layer: List[int], layout: SequenceLayout) -> List[int]:
    """Visual tokens per layer: every non-visual token is always kept."""
    fixed = layout.length - layout.num_visual
    return [t - fixed for t in tokens_per_layer]


def _no_sync() -> None:
    """CPU work is synchronous: nothing to wait for."""


def load_policy(path_or_preset: str, device: str = "auto",
                dtype: Union[str, torch.dtype] = "auto",
                prune_config: Optional[PruneConfig] = None, layout: Optional[str] = None,
                unnorm_key: Optional[str] = None, seed: int = 0) -> SpecPrunePolicy:
    """Build a policy from a preset (random weights, seeded) or a checkpoint folder."""
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    model, tokenizer, stats, lay = load_model(path_or_preset, layout, unnorm_key, seed,
                                              dtype=torch_dtype)
    return SpecPrunePolicy(model, tokenizer, stats, lay, prune_config, device, torch_dtype)
