"""Run scripted LIBERO experts one after another: a task whose BDDL goal has several parts
(LIBERO-10's two sub-goals, ``(Turnon stove) (On moka_pot stove)``) is their sequence. No ROS.

Each part is an expert with ``reset``, ``act(obs)``, ``phase_log``, ``done`` and
``valid_start(obs)`` (``libero_experts.PickPlaceExpert``, ``libero_primitives``). The sequence
hands control to the next part once the current one reports ``done`` (its goal holds and the
hand is clear); the last part keeps acting until the episode ends. A part's goal that is
undone later (a bowl knocked off) is not revisited: LIBERO's success check sees that.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

#: The order parts run in, by BDDL predicate: what opens or switches on first, what closes
#: last (a drawer is closed over the bowl put in it), placements in the goal's own order.
PREDICATE_ORDER = {"open": 0, "turnon": 0, "on": 1, "in": 1, "close": 2, "turnoff": 2}


def ordered_goal(goal: Sequence[Sequence[str]]) -> List[List[str]]:
    """The goal's parts in the order they are done (stable within a rank); ValueError for
    a predicate with no rank."""
    parts = [[str(g) for g in part] for part in goal]
    for part in parts:
        if not part or part[0].lower() not in PREDICATE_ORDER:
            raise ValueError(f"no scripted primitive for goal part {part!r}")
    return sorted(parts, key=lambda part: PREDICATE_ORDER[part[0].lower()])


class SequenceExpert:
    """The parts' experts in order; ``phase_log`` entries carry the part's index
    (``"1:approach"``); ``part`` is the index of the part acting and ``focus`` its two
    bodies, so a demo recorder labels each part's ticks with that part's object and target."""

    def __init__(self, parts: Sequence):
        if not parts:
            raise ValueError("SequenceExpert needs at least one part")
        self.parts = list(parts)
        self.reset()

    def reset(self) -> None:
        """Start a new episode at the first part."""
        for part in self.parts:
            part.reset()
        self.index = 0
        self.phase_log: List[Tuple[int, str]] = []
        self._tick = 0
        self._logged = 0
        self._start = 0  # the tick the current part began

    def start_at(self, index: int) -> None:
        """Begin at part ``index``: the earlier parts already hold (an expert taking over
        an episode someone else began, ``takeover_demos``). Call it right after ``reset``."""
        if not 0 <= index < len(self.parts):
            raise ValueError(f"part {index} of a sequence of {len(self.parts)}")
        self.index, self._logged, self._start = index, 0, self._tick
        self.phase_log.append((self._tick, f"{index}:start"))

    @property
    def done(self) -> bool:
        """Every part reported done (the last one still holds)."""
        return self.index == len(self.parts) - 1 and self.parts[-1].done

    @property
    def part(self) -> int:
        """The index of the part acting (the one whose action ``act`` returned last)."""
        return self.index

    @property
    def focus(self) -> Tuple[str, str]:
        """The acting part's two bodies (object, target)."""
        return self.parts[self.index].focus

    @property
    def phase(self) -> str:
        """The current part's phase, with its index."""
        return f"{self.index}:{self.parts[self.index].phase}"

    def valid_start(self, obs: Dict[str, np.ndarray]) -> bool:
        """Every part can start from this state."""
        return all(part.valid_start(obs) for part in self.parts)

    def act(self, obs: Dict[str, np.ndarray]) -> np.ndarray:
        """The (7,) action for this observation."""
        if self.parts[self.index].done and self.index < len(self.parts) - 1:
            self._collect()
            self.index += 1
            self._logged, self._start = 0, self._tick
            self.phase_log.append((self._tick, f"{self.index}:start"))
        action = self.parts[self.index].act(obs)
        self._collect()
        self._tick += 1
        return action

    def _collect(self) -> None:
        """Copy the current part's new phase changes into the sequence's log."""
        part = self.parts[self.index]
        for tick, phase in part.phase_log[self._logged:]:
            self.phase_log.append((self._start + tick, f"{self.index}:{phase}"))
        self._logged = len(part.phase_log)
