"""What the policy node publishes besides its own state: chunk messages, the kept-patch
overlay, and the diagnostics statuses (step numbers, skip counters, the unconfigured
state). Message construction only: no subscriptions, no model."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from specprune import ActionChunk, StepStats
from specprune_ros.node import parameters as params
from specprune_ros.node.input_faults import Fault
from specprune_ros.node.tf_motion import duration

DIAG_NAME = f"{params.NODE_NAME}: inference"
_DIM = 3  # dropped patches are shown at 1/_DIM brightness


def chunk_msg(chunk: ActionChunk, names: Sequence[str], stamp: Any, frame_id: str,
              control_rate_hz: float) -> JointTrajectory:
    """One point per future control tick, time_from_start = (i + 1) / control_rate_hz."""
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    for i, row in enumerate(chunk.actions):
        msg.points.append(JointTrajectoryPoint(
            positions=[float(v) for v in row], time_from_start=duration(
                (i + 1) / control_rate_hz)))
    return msg


def overlay_image(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> np.ndarray:
    """The views side by side (top-aligned), patches outside ``masks`` darkened.

    masks[v] is view v's (grid, grid) kept-patch mask over the model's input frame, mapped
    onto the whole image (nearest patch); views without a mask are shown as they are.
    """
    tiles = []
    for v, img in enumerate(images):
        if v < len(masks) and masks[v].size:
            mask = np.asarray(masks[v], dtype=bool)
            rows = np.arange(img.shape[0]) * mask.shape[0] // img.shape[0]
            cols = np.arange(img.shape[1]) * mask.shape[1] // img.shape[1]
            img = np.where(mask[rows][:, cols][..., None], img, img // _DIM)
        tiles.append(img)
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    return np.ascontiguousarray(np.concatenate(padded, axis=1).astype(np.uint8))


@dataclass
class StepReport:
    """The numbers of the last published step, for diagnostics."""

    stats: StepStats
    latency_ms: float  # newest image received -> chunk published
    overhead_ms: float  # the node's own part of it: from the moment the worker could take the
    # observation (image received, worker free, rate limit passed) to the chunk published,
    # minus the model step
    replan: bool = False
    instruction: str = ""  # the instruction the step was computed with


@dataclass
class Counters:
    """Steps, chunks, and worker iterations that ran no step because of faults ("skipped",
    in total and per fault kind: the fault key before any ':<topic>'). The worker iterates
    once per camera frame received (every 0.1 s without frames), rate limit permitting."""

    steps: int = 0
    chunks: int = 0
    skips: int = 0
    last_skip_reason: str = ""
    skipped_by: Dict[str, int] = field(default_factory=dict)
    waited_for_state: int = 0  # builds that waited for the state of the image instant
    withheld: int = 0  # chunks computed but not published: during the step ~/enable false
    # came, or the instruction changed (parameter, topic, or forgotten by ~/reset)

    def skip(self, faults: Sequence[Fault]) -> None:
        self.skips += 1
        self.last_skip_reason = "; ".join(f.message for f in faults)
        for kind in sorted({f.key.split(":")[0] for f in faults}):
            self.skipped_by[kind] = self.skipped_by.get(kind, 0) + 1

    def values(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"steps": self.steps, "chunks_published": self.chunks,
                               "skipped": self.skips, "last_skip_reason": self.last_skip_reason,
                               "waited_for_state": self.waited_for_state,
                               "chunks_withheld": self.withheld}
        out.update({f"skipped.{k}": n for k, n in sorted(self.skipped_by.items())})
        return out


def _kv(values: Dict[str, Any]) -> List[KeyValue]:
    def text(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    return [KeyValue(key=k, value=text(v)) for k, v in values.items()]


def step_values(report: Optional[StepReport]) -> Dict[str, Any]:
    """Diagnostic key/values of the last step (empty before the first)."""
    if report is None:
        return {}
    s = report.stats
    kept = s.kept_visual_tokens
    return {
        "mode": s.mode, "step_ms": s.total_ms, "vision_ms": s.vision_ms, "llm_ms": s.llm_ms,
        "head_ms": s.head_ms, "selection_ms": s.selection_ms,
        "node_overhead_ms": report.overhead_ms, "latency_ms": report.latency_ms,
        "kept_visual_tokens": kept, "visual_tokens_total": s.visual_tokens_total,
        "visual_tokens_per_layer": " ".join(str(n) for n in s.visual_tokens_per_layer),
        "estimated_speedup": s.visual_tokens_total / kept if kept else float("inf"),
        "n_global": s.n_global, "n_dynamic": s.n_dynamic, "n_local": s.n_local,
        "lookback_steps": s.lookback_steps, "trans_speed": s.trans_speed,
        "rot_speed": s.rot_speed, "replan": report.replan, "instruction": report.instruction,
    }


def diagnostic_status(faults: Sequence[Fault], report: Optional[StepReport],
                      counters: Counters, enabled: bool, hardware_id: str,
                      active: bool = True, matching: Optional[Dict[str, int]] = None
                      ) -> DiagnosticStatus:
    """One status: OK with the step numbers, WARN (input) / ERROR (model) with the reasons.
    ``matching``: the observation builder's frame counters (dropped duplicates, late
    frames, clock resets)."""
    status = DiagnosticStatus(name=DIAG_NAME, hardware_id=hardware_id)
    if not active:
        status.level = DiagnosticStatus.OK
        status.message = "inactive (lifecycle): no steps, no chunks until activated"
    elif faults:
        status.level = DiagnosticStatus.ERROR if any(f.severe for f in faults) \
            else DiagnosticStatus.WARN
        status.message = "no chunk: " + "; ".join(f.message for f in faults)
    elif not enabled:
        status.level, status.message = DiagnosticStatus.OK, "chunk publishing disabled (~/enable)"
    elif report is None:
        status.level, status.message = DiagnosticStatus.OK, "waiting for the first observation"
    else:
        kept, total = report.stats.kept_visual_tokens, report.stats.visual_tokens_total
        status.level = DiagnosticStatus.OK
        status.message = (f"{report.stats.mode}: {kept}/{total} visual tokens, "
                          f"{report.stats.total_ms:.0f} ms per step")
    values = step_values(report)
    values.update(counters.values())
    values.update(matching or {})
    values.update(publishing_enabled=enabled, active=active)
    status.values = _kv(values)
    return status


def next_steps(node: str) -> str:
    """What to do with a node that has no model (logged once at start, ``node`` its name)."""
    return (f"no model named: {node} waits unconfigured and publishes nothing. Next: `ros2 "
            f"param set {node} model /path/to/checkpoint`, then `ros2 lifecycle set {node} "
            f"configure` and `ros2 lifecycle set {node} activate` (or launch with "
            f"model:=/path/to/checkpoint)")


def unconfigured_status(model: str, error: str) -> DiagnosticStatus:
    """The status while unconfigured: ERROR with the reason when the last configure failed,
    WARN when no model is named, OK while a named model waits for configure."""
    status = DiagnosticStatus(name=DIAG_NAME, hardware_id=model)
    if error:
        status.level, status.message = DiagnosticStatus.ERROR, f"configure failed: {error}"
    elif not model:
        status.level = DiagnosticStatus.WARN
        status.message = ("unconfigured, no model named: set the parameter model, then "
                          "configure and activate")
    else:
        status.level = DiagnosticStatus.OK
        status.message = f"unconfigured: model {model!r} waits for configure"
    status.values = _kv({"configured": False, "active": False, "model": model})
    return status
