"""Action chunks on a clock: which point is due now, and how overlapping chunks combine.

No ROS imports. A chunk is stamped with its observation's (camera) time ``stamp``; point i
is the action for the control period that ends at ``stamp + time_from_start[i]`` and
starts where point i - 1's ends (point 0's starts at ``stamp``), so with the policy node's
``time_from_start = (i + 1) / rate`` point i covers ``[stamp + i / rate, stamp + (i + 1) /
rate)``. At time t the executor runs the point whose period holds t: points whose period
ended before the chunk arrived (the policy's latency) are skipped, never replayed late.

Several chunks can cover t (a new chunk every 0.1 s, each 0.4 s long). ``ChunkCombiner``
turns them into one action per tick by one of three rules:

- ``latest``: the point of the newest chunk (by stamp) covering t.
- ``ensemble``: ACT's temporal ensembling (Zhao et al. 2023, "Learning Fine-Grained
  Bimanual Manipulation with Low-Cost Hardware", act/imitate_episodes.py): the mean of
  every covering chunk's point, weighted ``exp(-k * j)`` with j = 0 for the oldest chunk
  (ACT uses k = 0.01: older predictions weigh slightly more, which smooths).
- ``crossfade``: the newest chunk, blended linearly with what ran before it over its first
  ``k`` points: at the first tick the new chunk runs, the weight of the new chunk is
  1 / (k + 1), rising linearly in time to 1 after k point periods. "What ran before" is
  the previous chunk's point at t while that chunk still covers t, else the combined
  action of the tick before the new chunk took over. After a hold (``forget_last``) nothing
  ran before: the next chunk starts unblended.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

RULES = ("latest", "ensemble", "crossfade")
MAX_POINTS = 1000


@dataclass(frozen=True)
class Chunk:
    """A validated chunk: ``actions`` (N, D) in the executor's dimension order, ``ends``
    (N,) the absolute end time of each point's period, ``stamp`` the observation time,
    ``received`` the executor's time of arrival, ``seq`` its arrival number."""

    stamp: float
    ends: np.ndarray
    actions: np.ndarray
    received: float
    seq: int = 0

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[self.stamp], self.ends[:-1]])

    @property
    def period(self) -> float:
        """Duration of the first point (the chunk's control period)."""
        return float(self.ends[0] - self.stamp)

    def index_at(self, t: float) -> Optional[int]:
        """The point whose period holds ``t``; None before the first or after the last."""
        if t < self.stamp or t >= self.ends[-1]:
            return None
        return int(np.searchsorted(self.ends, t, side="right"))

    def covers(self, t: float) -> bool:
        return self.index_at(t) is not None


def parse_chunk(names: Sequence[str], rows: Sequence[Sequence[float]],
                times_from_start: Sequence[float], expected: Sequence[str], stamp: float,
                received: float, seq: int = 0, max_points: int = MAX_POINTS) -> Chunk:
    """A Chunk from a message's fields; ValueError saying what is malformed.

    ``names`` must be a permutation of ``expected`` (the executor's dimension order); every
    row needs one finite value per name; times must be finite, positive and strictly
    increasing; the stamp must be set (a chunk without its observation time cannot be
    placed on the clock)."""
    names = list(names)
    if sorted(names) != sorted(expected) or len(set(names)) != len(names):
        raise ValueError(f"joint_names must be a permutation of {list(expected)}, got {names}")
    if not 1 <= len(rows) <= max_points:
        raise ValueError(f"a chunk needs 1 to {max_points} points, got {len(rows)}")
    bad = [i for i, row in enumerate(rows) if len(row) != len(expected)]
    if bad:
        raise ValueError(f"points {bad[:5]} do not have {len(expected)} positions")
    actions = np.array([list(row) for row in rows], dtype=np.float64)
    if not np.all(np.isfinite(actions)):
        rows_bad = np.nonzero(~np.isfinite(actions).all(axis=1))[0][:5].tolist()
        raise ValueError(f"non-finite positions in points {rows_bad}")
    offsets = np.asarray(times_from_start, dtype=np.float64)
    if offsets.shape != (len(rows),) or not np.all(np.isfinite(offsets)):
        raise ValueError("every point needs a finite time_from_start")
    if offsets[0] <= 0.0 or np.any(np.diff(offsets) <= 0.0):
        raise ValueError("time_from_start must be positive and strictly increasing, got "
                         f"{offsets[:4].tolist()}...")
    if not math.isfinite(stamp) or stamp <= 0.0:
        raise ValueError("the chunk has no header stamp (its observation time)")
    order = [names.index(name) for name in expected]
    return Chunk(stamp=float(stamp), ends=stamp + offsets, actions=actions[:, order],
                 received=float(received), seq=seq)


@dataclass
class Sample:
    """One tick's combined action (None: no chunk covers the tick) and what went into it."""

    action: Optional[np.ndarray]
    chunks_used: int = 0
    newest_seq: int = -1
    newest_index: int = -1
    skipped: int = 0  # points of a chunk run for the first time whose time had passed


class ChunkCombiner:
    """The chunks received so far and the rule that turns them into one action per tick."""

    def __init__(self, rule: str = "latest", ensemble_k: float = 0.01,
                 crossfade_points: int = 2, max_chunks: int = 32) -> None:
        self.set_rule(rule, ensemble_k, crossfade_points)
        self._max_chunks = max_chunks
        self.reset()

    def set_rule(self, rule: str, ensemble_k: float, crossfade_points: int) -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if not math.isfinite(ensemble_k) or ensemble_k < 0.0:
            raise ValueError(f"ensemble_k must be >= 0, got {ensemble_k}")
        if crossfade_points < 0:
            raise ValueError(f"crossfade_points must be >= 0, got {crossfade_points}")
        self.rule, self.ensemble_k, self.crossfade_points = rule, ensemble_k, crossfade_points

    def reset(self) -> None:
        """Forget every chunk and the fade state (activation, cleanup, watchdog, e-stop
        reset); a plain hold only calls ``forget_last``."""
        self._chunks: List[Chunk] = []
        self._started: dict = {}  # seq -> time the chunk first ran
        self.forget_last()

    def forget_last(self) -> None:
        """The arm was held: what ran before is no action to fade from (the chunks stay)."""
        self._fade_from: Optional[Chunk] = None  # the chunk that ran before the newest
        self._fade_value: Optional[np.ndarray] = None  # the action when the newest took over
        self._newest_run: Optional[Chunk] = None
        self._last: Optional[np.ndarray] = None

    def add(self, chunk: Chunk) -> None:
        """Keep ``chunk`` (ordered by stamp); drop chunks that can no longer run."""
        self._chunks.append(chunk)
        self._chunks.sort(key=lambda c: (c.stamp, c.seq))
        del self._chunks[:-self._max_chunks]

    def sample(self, t: float) -> Sample:
        """The combined action at time ``t`` (call once per control tick)."""
        self._chunks = [c for c in self._chunks if t < c.ends[-1]]
        covering = [c for c in self._chunks if c.covers(t)]
        if not covering:
            return Sample(None)
        newest = covering[-1]
        index = newest.index_at(t)
        skipped = 0
        for chunk in covering:  # points passed before a chunk first ran are skipped
            if chunk.seq not in self._started:
                self._started[chunk.seq] = t
                skipped += chunk.index_at(t) if chunk is newest else 0
        if newest is not self._newest_run:
            self._fade_from, self._newest_run = self._newest_run, newest
            self._fade_value = self._last
        action = self._combine(t, covering, newest)
        self._last = action
        alive = {c.seq for c in self._chunks}
        self._started = {seq: s for seq, s in self._started.items() if seq in alive}
        return Sample(action.copy(), len(covering), newest.seq, index, skipped)

    def _combine(self, t: float, covering: List[Chunk], newest: Chunk) -> np.ndarray:
        if self.rule == "ensemble":
            points = np.stack([c.actions[c.index_at(t)] for c in covering])  # oldest first
            weights = np.exp(-self.ensemble_k * np.arange(len(covering)))
            return (weights[:, None] * points).sum(axis=0) / weights.sum()
        new = newest.actions[newest.index_at(t)]
        if self.rule == "latest" or self.crossfade_points == 0:
            return new.copy()
        before = self._fade_from
        if before is not None and before.covers(t):
            old = before.actions[before.index_at(t)]
        elif self._fade_value is not None:
            old = self._fade_value
        else:
            return new.copy()
        ran = (t - self._started[newest.seq]) / max(newest.period, 1e-9)  # point periods
        alpha = min(1.0, (ran + 1.0) / (self.crossfade_points + 1.0))
        return (1.0 - alpha) * old + alpha * new
