"""The training loop's bookkeeping: step count, time budget and calibration, save timing,
log lines, and the stop requested by SIGTERM / SIGINT (honoured at a step boundary)."""
from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from specprune.train.optimisation import learning_rate
from specprune.train.train_config import TrainConfig

Log = Callable[[str], None]

#: Set by SIGTERM / SIGINT; the loop stops before its next step.
_STOP = threading.Event()


def _request_stop(signum: int, frame: Any) -> None:
    _STOP.set()


def stop_on_signals() -> Dict[int, Any]:
    """SIGTERM / SIGINT -> _STOP (checked between steps); returns the old handlers."""
    _STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def val_subset(samples: np.ndarray, limit: int) -> np.ndarray:
    if len(samples) <= limit:
        return samples
    return samples[np.linspace(0, len(samples) - 1, limit).round().astype(int)]


class Loop:
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
        # with --minutes alone the budget decides until calibration fixed the total (its
        # steps always run): the run is then the same --steps run on a busy machine too
        budget_decides = self.cfg.steps is not None or \
            (self.total is None and step >= self.cfg.calibration_steps)
        if budget_decides and self.elapsed() + self._reserve() > self.budget_s:
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
