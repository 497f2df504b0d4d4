"""Pair camera frames by header stamp, and read a sampled signal at a given stamp (ROS-free).

``StampMatcher`` keeps a short buffer of frames per view and returns the newest set (one
frame per view) whose stamps match exactly or lie within ``max_skew_s`` of each other, the
way message_filters' ApproximateTimeSynchronizer pairs messages (not installable here), and
never a set older than the last one handed out. Keeping only the newest frame per view pairs
by arrival instead: whenever the next frame of one view arrives before the other view's
frame of the same instant, the newest pair is one tick apart although a matched pair is in
hand (the defect of issue #13).

Arrival anomalies are counted, not raised:
- a frame whose stamp is already buffered for its view: a duplicate, dropped;
- a frame not newer than the last frame used for its view (or than the start of a new
  episode, ``spend_until``): late, dropped;
- a frame older than the view's newest by more than ``reset_after_s``: the stamps' clock
  went back (a simulator restarted, a bag looped): every buffer is cleared and matching
  starts over from that frame.

``SampleHistory`` is the same idea for joint states and poses: timestamped samples, read at
an image stamp exactly or by interpolation between the two samples around it.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")

ADDED, DUPLICATE, LATE, RESET = "added", "duplicate", "late", "reset"


@dataclass(frozen=True)
class Stamped(Generic[T]):
    stamp: float  # seconds
    item: T


@dataclass
class MatchCounters:
    """Frames dropped on arrival, by reason, and clock resets."""

    duplicate: int = 0
    late: int = 0
    reset: int = 0

    def as_dict(self) -> Dict[str, int]:
        return {"frames_duplicate": self.duplicate, "frames_late": self.late,
                "clock_resets": self.reset}


class StampMatcher(Generic[T]):
    """Newest set of one frame per view whose stamps lie within ``max_skew_s``. Not
    thread-safe (the ObservationBuilder holds its lock around every call)."""

    def __init__(self, views: int, max_skew_s: float, depth: int = 10,
                 reset_after_s: float = 1.0) -> None:
        if views < 1 or depth < 1:
            raise ValueError(f"need at least one view and depth 1, got {views}, {depth}")
        self.views, self.depth = views, depth
        self.max_skew_s, self.reset_after_s = max_skew_s, reset_after_s
        self.counters = MatchCounters()
        self.clear()

    def clear(self) -> None:
        """Forget every frame and the last set used."""
        self._buffers: List[List[Stamped[T]]] = [[] for _ in range(self.views)]
        self._used: List[float] = [float("-inf")] * self.views

    # ---------------------------------------------------------------- input
    def add(self, view: int, stamp: float, item: T) -> str:
        """Buffer ``item`` of ``view``; returns ADDED, DUPLICATE, LATE or RESET."""
        buffer = self._buffers[view]
        outcome = ADDED
        if buffer and stamp < buffer[-1].stamp - self.reset_after_s:
            self.clear()
            self.counters.reset += 1
            buffer, outcome = self._buffers[view], RESET
        elif stamp <= self._used[view]:
            self.counters.late += 1
            return LATE
        stamps = [f.stamp for f in buffer]
        at = bisect.bisect_left(stamps, stamp)
        if at < len(stamps) and stamps[at] == stamp:
            self.counters.duplicate += 1
            return DUPLICATE
        buffer.insert(at, Stamped(stamp, item))
        del buffer[:-self.depth]
        return outcome

    # ---------------------------------------------------------------- output
    def newest(self, view: int) -> Optional[Stamped[T]]:
        """The view's newest buffered frame (used or not)."""
        buffer = self._buffers[view]
        return buffer[-1] if buffer else None

    def pending(self) -> bool:
        """Every view holds a frame newer than the last set used."""
        return all(b and b[-1].stamp > used for b, used in zip(self._buffers, self._used))

    def match(self) -> Optional[List[Stamped[T]]]:
        """The newest unused set within ``max_skew_s`` (newest by its oldest stamp, then the
        smallest spread), or None. Every frame of it is newer than the last set used."""
        fresh = [[f for f in b if f.stamp > used] for b, used in zip(self._buffers, self._used)]
        if not all(fresh):
            return None
        best: Optional[Tuple[Tuple[float, float], List[Stamped[T]]]] = None
        for pivot in fresh[0]:
            chosen = [pivot] + [min(frames, key=lambda f: abs(f.stamp - pivot.stamp))
                                for frames in fresh[1:]]
            stamps = [f.stamp for f in chosen]
            spread = max(stamps) - min(stamps)
            if spread > self.max_skew_s:
                continue
            score = (min(stamps), -spread)
            if best is None or score > best[0]:
                best = (score, chosen)
        return None if best is None else best[1]

    def spend_until(self, stamp: float) -> None:
        """Every frame stamped at or before ``stamp`` is spent (a new episode starts at
        ``stamp``): buffered ones are never matched (they stay as the views' newest, for the
        age checks), later arrivals count as late. A frame more than ``reset_after_s``
        before it is a clock reset, as usual."""
        self._used = [max(used, stamp) for used in self._used]

    def mark_used(self, frames: Sequence[Stamped[T]]) -> None:
        """``frames`` (a match) went into an observation: it and everything older is spent."""
        self._used = [f.stamp for f in frames]
        for view, buffer in enumerate(self._buffers):
            self._buffers[view] = [f for f in buffer if f.stamp >= self._used[view]]

    def newest_spread(self) -> Tuple[int, int, float]:
        """(view with the oldest newest frame, view with the newest one, their stamp gap)
        over the views' newest frames (every view must have one)."""
        stamps = [b[-1].stamp for b in self._buffers]
        oldest = min(range(self.views), key=stamps.__getitem__)
        newest = max(range(self.views), key=stamps.__getitem__)
        return oldest, newest, stamps[newest] - stamps[oldest]


# ------------------------------------------------------------------------------ samples
def _stamp(sample: Stamped[Any]) -> float:
    return sample.stamp


@dataclass
class SampleHistory(Generic[T]):
    """Timestamped samples of one signal, oldest first: those within ``reset_after_s`` of
    the newest (its age limit: older ones are stale anyway), at most ``depth`` of them
    (a 1 kHz joint state keeps its last 0.5 s).

    ``at(stamp, blend)`` gives the sample with exactly that stamp, or
    ``blend(before, after, fraction)`` between the two samples around it; before the first
    sample or after the last one it gives None (the caller waits or reports). A sample
    older than the newest by more than ``reset_after_s`` means the clock went back: the
    history restarts from it. Samples that arrive out of order are inserted in place;
    one with a stamp already held replaces it.
    """

    depth: int = 4096
    reset_after_s: float = 1.0
    samples: List[Stamped[T]] = field(default_factory=list)

    def add(self, stamp: float, item: T) -> None:
        sample = Stamped(stamp, item)
        if not self.samples or stamp > self.samples[-1].stamp:
            self.samples.append(sample)  # the usual case: in order
        elif stamp < self.samples[-1].stamp - self.reset_after_s:
            self.samples[:] = [sample]  # the clock went back
        else:
            at = bisect.bisect_left(self.samples, stamp, key=_stamp)
            if self.samples[at].stamp == stamp:
                self.samples[at] = sample
            else:
                self.samples.insert(at, sample)
        oldest = self.samples[-1].stamp - self.reset_after_s
        del self.samples[:max(bisect.bisect_left(self.samples, oldest, key=_stamp),
                              len(self.samples) - self.depth)]

    def clear(self) -> None:
        self.samples.clear()

    @property
    def newest(self) -> Optional[Stamped[T]]:
        return self.samples[-1] if self.samples else None

    def around(self, stamp: float) -> Tuple[Optional[Stamped[T]], Optional[Stamped[T]]]:
        """(last sample at or before ``stamp``, first sample at or after it)."""
        right = bisect.bisect_left(self.samples, stamp, key=_stamp)
        after = self.samples[right] if right < len(self.samples) else None
        if after is not None and after.stamp == stamp:
            return after, after
        before = self.samples[right - 1] if right > 0 else None
        return before, after

    def at(self, stamp: float, blend: Callable[[T, T, float], T]) -> Optional[T]:
        before, after = self.around(stamp)
        if before is None or after is None:
            return None
        if before is after:
            return before.item
        fraction = (stamp - before.stamp) / (after.stamp - before.stamp)
        return blend(before.item, after.item, fraction)
