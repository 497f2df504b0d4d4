"""SpecPrune settings: one validated, documented dataclass.

Every constant of the method is a field here. Each field carries its documentation and
its valid range in ``metadata`` so that adapters (the ROS node's parameter descriptors,
config/policy.yaml, the CLI) derive from this one table. Values come from the paper
(arXiv 2509.05614), its released code, or are a documented choice where neither gives
one; see shared/reference/paper-notes.md.

Units of the controller: end-effector speeds in m/s and rad/s, measured in the robot
base frame. The released code compares LIBERO *actions* (OSC deltas in [-1, 1], 0.05 m
and 0.5 rad per unit at 20 Hz); its thresholds are converted here with
1 action unit = 1.0 m/s translation = 10 rad/s rotation.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


def documented_field(default: Any, doc: str, lo: Optional[float] = None,
                     hi: Optional[float] = None, **extra: Any) -> Any:
    """A dataclass field with its documentation and range (plus ``extra``) in metadata."""
    meta = {"doc": doc, "min": lo, "max": hi, **extra}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def _spec(default: Any, doc: str, lo: Optional[float] = None, hi: Optional[float] = None,
          live: bool = True) -> Any:
    """A PruneConfig field: documentation, range and liveness (settable on a running node)."""
    return documented_field(default, doc, lo, hi, live=live)


@dataclass(frozen=True)
class PruneConfig:
    """All SpecPrune knobs. Immutable: change with ``dataclasses.replace`` / ``updated``."""

    enabled: bool = _spec(True, "Master switch: False runs the unpruned model.")
    keep_scale: float = _spec(
        1.0, "alpha: multiplies every K (global, dynamic, local). Larger keeps more tokens. "
        "The paper's alpha is used inconsistently; this is the keep-more meaning.", 0.1, 10.0)

    # --- V_local: self-speculative top-K from the first two decoder layers ------------
    local_k_primary_coarse: int = _spec(
        16, "Top-K per layer for the third-person view (view 0) in coarse mode (released code).",
        0, 4096)
    local_k_wrist_coarse: int = _spec(
        12, "Top-K per layer for every other view (wrist) in coarse mode (released code).",
        0, 4096)
    local_k_primary_fine: int = _spec(
        25, "Top-K per layer for view 0 in fine mode (released code).", 0, 4096)
    local_k_wrist_fine: int = _spec(
        19, "Top-K per layer for the other views in fine mode (released code).", 0, 4096)
    local_candidate_factor: float = _spec(
        3.0, "After layer 0, keep candidate_factor * K top tokens per view so that layer 1 can "
        "refine them (released code keeps 3K).", 1.0, 64.0)
    refine_after_layer1: bool = _spec(
        True, "True: prune to candidates after layer 0, to the final set after layer 1. False: "
        "prune to the final set right after layer 0 (layer 1 runs on the final set).")
    local_first_layer: int = _spec(
        0, "The first of the two consecutive layers whose scores select V_local (the paper: 0, "
        "i.e. layers 0 and 1, every later layer on the kept set). Layers before it run on "
        "every token; dynamic layer pruning starts after the static selection. Not in the "
        "paper: a later start trades speed for a model that gathers context later.", 0, 64)
    coverage_k: int = _spec(
        0, "V_cover: per view, this many patches at an even stride over the view, scaled by "
        "keep_scale, in the static set and (coverage_spared_by_layer_pruning) never dropped "
        "by layer pruning. Not in the paper (0): for a policy that needs "
        "every part of the scene coarsely, where sets ranked by attention cluster on a few "
        "objects (measured on the LIBERO-shaped suites: README).", 0, 4096)
    coverage_in_budget: bool = _spec(
        False, "True: V_cover takes its share of the static set instead of adding to it. Each "
        "view keeps as many tokens as it would without V_cover; the set's lowest-ranked "
        "tokens (layer local_first_layer + 1 scores) give way to the grid. False: V_cover is "
        "added to the set. Not in the paper.")
    coverage_spared_by_layer_pruning: bool = _spec(
        True, "True: layer pruning never drops V_cover (its count is each pruning layer's "
        "floor), so where V_cover fills most of the set the ranked tokens are what goes. "
        "False: V_cover is ranked by layer pruning like every other token (and only "
        "layer_prune_min_visual is the floor); it is sure of its place in the static set only. "
        "Not in the paper.")

    # --- V_global: previous step's importance ------------------------------------------
    global_k: int = _spec(
        30, "Top-K per view from the previous step's scores (ICML version: top-30).", 0, 4096)
    global_score_layers: Tuple[int, ...] = _spec(
        (14, -1), "Decoder layers whose scores feed the next step's V_global (ICML: layers 15 "
        "and 32 of 32, 1-based). Negative indices count from the last layer.")

    # --- V_dynamic: frame comparison ----------------------------------------------------
    dynamic_k: int = _spec(
        20, "Per view, keep the K patches least similar to the frame T steps back (ICML K_D=20).",
        0, 4096)
    static_similarity: float = _spec(
        0.986, "A patch whose pixel cosine similarity with the look-back frame is at least this "
        "is static and never enters V_dynamic (released code's threshold).", 0.0, 1.0)
    dynamic_from_static: bool = _spec(
        False, "False: V_dynamic is the dynamic_k least similar patches per view (ICML). True: "
        "the released code's rule: per view the static_k_coarse / static_k_fine most similar "
        "patches at or above static_similarity are static and every other patch enters "
        "V_dynamic (with no earlier frame, every patch): the budget the paper measured (~48 % "
        "of visual tokens kept) instead of ~20 %.")
    static_k_coarse: int = _spec(
        200, "With dynamic_from_static: static patches per view in coarse mode (released code: "
        "200 of 256). keep_scale does not apply.", 0, 4096)
    static_k_fine: int = _spec(
        220, "With dynamic_from_static: static patches per view in fine mode (released code: "
        "220).", 0, 4096)
    lookback_max_steps: int = _spec(
        1, "Look-back T (policy steps) when the end effector is at rest. The released code "
        "keeps a frame per env tick and looks back 1-5 ticks (its prev_T 2..6 counts the "
        "current frame); a policy holds one frame per step (8 ticks with OFT's chunks), so "
        "T = 1, the previous step's frame, is the nearest it can look. A larger T compares "
        "with older frames at low speed (6 before 2026-12-06: 8-48 ticks back).", 1, 64)
    lookback_min_steps: int = _spec(
        1, "Look-back T at or above lookback_speed_ref.", 1, 64)
    lookback_speed_ref: float = _spec(
        0.5, "End-effector speed (m/s) at which T reaches lookback_min_steps; T falls "
        "linearly from lookback_max_steps at rest (choice: the paper's formulas are in "
        "action units and disagree between versions).", 1e-6, 100.0)

    # --- Dynamic (layer-level) pruning --------------------------------------------------
    layer_prune_enabled: bool = _spec(True, "Drop further visual tokens at layer_prune_layers.")
    layer_prune_layers: Tuple[int, ...] = _spec(
        (5, 10, 15, 20), "Decoder layers before which tokens are dropped (paper: 5, 10, 15, 20).")
    layer_prune_ratio: float = _spec(
        0.10, "Fraction of the remaining visual tokens dropped at each of those layers (paper).",
        0.0, 0.9)
    layer_prune_min_visual: int = _spec(
        60, "Never prune below this many visual tokens (released code's floor).", 0, 100000)
    layer_depth: int = _spec(
        0, "Depth the layer numbers above (layer_prune_layers, global_score_layers) are "
        "written for. 0: absolute indices (layers a shallow model lacks are skipped). 32: "
        "layer i of a 32-layer Llama-2-7B (the paper) maps to round(i * L / 32) on an L-layer "
        "model (half up), so the paper's layers keep their relative depth on a smaller "
        "policy and stay as they are on a 32-layer checkpoint; pruning layers that map below "
        "2 are dropped, duplicates merged.", 0, 4096)
    layer_prune_ema_beta: float = _spec(
        0.2, "EMA weight of the previous layers' score: S = beta*S_prev + (1-beta)*s (paper).",
        0.0, 1.0)
    layer_prune_rank_k: float = _spec(
        8.0, "Steepness k of the rank weight sigmoid(-k*(rank/n - 1/2)) (not given by the "
        "paper: chosen so that the top and bottom deciles differ by ~2x).", 0.0, 1000.0)

    # --- Shapes for GPU graphs ----------------------------------------------------------
    bucket_size: int = _spec(
        0, "Round the kept visual-token count up to a multiple of this with the next-best real "
        "tokens, so shapes repeat (CUDA graphs / torch.compile). 0 disables.", 0, 4096)

    # --- Action-aware controller (coarse / fine) ----------------------------------------
    controller_enabled: bool = _spec(
        True, "False pins the mode to coarse.")
    warmup_steps: int = _spec(
        2, "Policy steps in coarse mode after reset before the controller may switch. The "
        "released code counts env ticks (it switches once acting_steps > 10: from the 2nd or "
        "3rd query of 8-action chunks), which 2 policy steps match (10 before 2026-12-06: "
        "80 ticks, so short episodes never left coarse mode).", 0, 100000)
    fine_enter_trans_speed: float = _spec(
        0.10, "Enter fine mode when translational speed (m/s) is below this... (code: "
        "||a_xy|| < 0.1)", 0.0, 100.0)
    fine_enter_rot_speed: float = _spec(
        2.0, "...and rotational speed (rad/s) is below this (code: ||a_rot|| < 0.2)...",
        0.0, 1000.0)
    fine_enter_max_z_speed: float = _spec(
        0.02, "...and the end effector is not rising faster than this (m/s; paper: dz <= 0, "
        "with a small tolerance for sensor noise).", -100.0, 100.0)
    fine_exit_trans_speed: float = _spec(
        0.40, "Leave fine mode when translational speed exceeds this (m/s; hysteresis: must be "
        ">= fine_enter_trans_speed).", 0.0, 100.0)
    fine_exit_rot_speed: float = _spec(
        3.0, "...or rotational speed exceeds this (rad/s; code: 0.3 action units).", 0.0, 1000.0)
    fine_exit_z_speed: float = _spec(
        0.20, "...or the end effector rises faster than this (m/s; code: a_z > 0.2, e.g. the "
        "object is lifted).", -100.0, 100.0)
    replan_on_fine_entry: bool = _spec(
        True, "On a coarse -> fine switch, flag the chunk so the caller drops the rest of the "
        "previous chunk (released code re-plans).")
    action_trans_to_speed: float = _spec(
        1.0, "When no measured motion is given, m/s per unit of the policy's own translational "
        "action (LIBERO OSC: 0.05 m per unit per step at 20 Hz).", 0.0, 1000.0)
    action_rot_to_speed: float = _spec(
        10.0, "Likewise rad/s per unit of rotational action (LIBERO OSC: 0.5 rad at 20 Hz).",
        0.0, 10000.0)

    def __post_init__(self) -> None:
        _validate(self)

    def updated(self, **changes: Any) -> "PruneConfig":
        """A copy with ``changes`` applied and validated (ValueError names the field)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown PruneConfig field(s): {', '.join(unknown)}")
        coerced = {k: _coerce(k, v) for k, v in changes.items()}
        return dataclasses.replace(self, **coerced)

    def local_k(self, fine: bool, view: int) -> int:
        """K for V_local in the given mode and view, scaled by keep_scale."""
        if fine:
            base = self.local_k_primary_fine if view == 0 else self.local_k_wrist_fine
        else:
            base = self.local_k_primary_coarse if view == 0 else self.local_k_wrist_coarse
        return self.scaled(base)

    def scaled(self, k: int) -> int:
        return int(round(k * self.keep_scale))


def parse_overrides(items: "list[str]") -> Tuple[Tuple[str, Any], ...]:
    """Command-line ``FIELD=VALUE`` strings as validated PruneConfig changes, sorted by
    field (values read as YAML: 32, 0.5, true, [5, 10]); ValueError naming the problem."""
    import yaml  # a CLI's need; the config itself does not read YAML

    changes: Dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--prune {item!r}: expected FIELD=VALUE")
        changes[name.strip()] = yaml.safe_load(text)
    PruneConfig().updated(**changes)  # raises ValueError naming the field
    return tuple(sorted(changes.items()))


def field_names() -> Tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PruneConfig))


@functools.lru_cache(maxsize=None)
def field_specs() -> Dict[str, Dict[str, Any]]:
    """name -> {default, type, doc, min, max, live}: the one table adapters derive from."""
    specs = {}
    for f in dataclasses.fields(PruneConfig):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        specs[f.name] = dict(f.metadata, default=default, type=type(default))
    return specs


def int_as_float(value: Any, kind: type) -> Any:
    """An int (not a bool) given for a float field, as a float; anything else unchanged
    (check_value then accepts or rejects it). Every validated config takes ints this way."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _coerce(name: str, value: Any) -> Any:
    """Accept ints for float fields and lists for tuple fields; reject everything else."""
    kind = field_specs()[name]["type"]
    value = int_as_float(value, kind)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _validate(cfg: PruneConfig) -> None:
    for name, spec in field_specs().items():
        value = getattr(cfg, name)
        check_value("PruneConfig", name, value, spec["type"], spec["min"], spec["max"])
    _check_pairs(cfg)


def check_value(owner: str, name: str, value: Any, kind: type, lo: Optional[float],
                hi: Optional[float]) -> None:
    """Type (bools are not numbers), finiteness and range of one field of a validated
    config dataclass; ValueError naming ``<owner>.<name>``."""
    _check_type(f"{owner}.{name}", value, kind)
    _check_range(f"{owner}.{name}", value, lo, hi)


def _check_type(where: str, value: Any, kind: type) -> None:
    if kind is tuple:
        if not isinstance(value, tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{where} must be a sequence of ints, got {value!r}")
        return
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(f"{where} must be {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")


def _check_range(where: str, value: Any, lo: Optional[float], hi: Optional[float]) -> None:
    if isinstance(value, (bool, tuple)):
        return
    if lo is not None and value < lo:
        raise ValueError(f"{where}={value!r} is below its minimum {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"{where}={value!r} is above its maximum {hi}")


def _check_pairs(cfg: PruneConfig) -> None:
    if cfg.lookback_min_steps > cfg.lookback_max_steps:
        raise ValueError(
            f"PruneConfig.lookback_min_steps={cfg.lookback_min_steps} exceeds "
            f"lookback_max_steps={cfg.lookback_max_steps}")
    if cfg.fine_exit_trans_speed < cfg.fine_enter_trans_speed:
        raise ValueError(
            f"PruneConfig.fine_exit_trans_speed={cfg.fine_exit_trans_speed} must be >= "
            f"fine_enter_trans_speed={cfg.fine_enter_trans_speed} (hysteresis)")
    if cfg.fine_exit_rot_speed < cfg.fine_enter_rot_speed:
        raise ValueError(
            f"PruneConfig.fine_exit_rot_speed={cfg.fine_exit_rot_speed} must be >= "
            f"fine_enter_rot_speed={cfg.fine_enter_rot_speed} (hysteresis)")
    if cfg.fine_exit_z_speed < cfg.fine_enter_max_z_speed:
        raise ValueError(
            f"PruneConfig.fine_exit_z_speed={cfg.fine_exit_z_speed} must be >= "
            f"fine_enter_max_z_speed={cfg.fine_enter_max_z_speed} (hysteresis)")
    if sorted(set(cfg.layer_prune_layers)) != list(cfg.layer_prune_layers) or any(
            i < 2 for i in cfg.layer_prune_layers):
        raise ValueError(
            f"PruneConfig.layer_prune_layers={cfg.layer_prune_layers!r} must be increasing and "
            ">= 2 (layers 0 and 1 belong to static selection)")


def resolve_layers(layers: Tuple[int, ...], num_layers: int, depth: int = 0,
                   lowest: int = 0) -> Tuple[int, ...]:
    """The model's layer indices of ``layers`` (sorted, distinct), written for a model of
    ``depth`` layers (0: absolute). Negative indices count from the last layer (-1: the last,
    at any depth); layers outside [lowest, num_layers) are dropped, so the paper's defaults
    also apply to shallower models with depth 0."""
    out = set()
    for i in layers:
        if i < 0:
            out.add(i + num_layers)
        elif depth:
            out.add(int(math.floor(i * num_layers / depth + 0.5)))
        else:
            out.add(i)
    return tuple(sorted(i for i in out if lowest <= i < num_layers))


def layer_pruning_layers(cfg: PruneConfig, num_layers: int) -> Tuple[int, ...]:
    """The layers dynamic layer pruning acts before on a model of ``num_layers`` layers
    (none when it is off)."""
    if not cfg.layer_prune_enabled:
        return ()
    return resolve_layers(cfg.layer_prune_layers, num_layers, cfg.layer_depth,
                          cfg.local_first_layer + 2)


def global_score_layers(cfg: PruneConfig, num_layers: int) -> Tuple[int, ...]:
    """The layers whose scores V_global reads on a model of ``num_layers`` layers."""
    return resolve_layers(cfg.global_score_layers, num_layers, cfg.layer_depth)


def layer_roles(cfg: PruneConfig, num_layers: int) -> Dict[str, List[int]]:
    """The decoder layers where a model of ``num_layers`` layers drops visual tokens under
    ``cfg``, by role (the pruning hook resolves its layers with the same two functions):
    ``static`` (V_local's selection before layer 1, refined before 2, both shifted by
    ``local_first_layer``), ``layer_pruning``
    (dynamic layer pruning) and ``global_scores`` (the layers V_global reads). Empty when
    pruning is off."""
    if not cfg.enabled:
        return {}
    first = cfg.local_first_layer
    return {"static": [first + 1, first + 2] if cfg.refine_after_layer1 else [first + 1],
            "layer_pruning": list(layer_pruning_layers(cfg, num_layers)),
            "global_scores": list(global_score_layers(cfg, num_layers))}
