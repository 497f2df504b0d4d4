"""A run's progress on disk, so a long evaluation stops and resumes where it was.

``specprune-eval --resume FILE`` appends one JSON line per finished episode (its
``EpisodeRecord``, the ``StepRecord`` rows of its policy steps, the hit-rate samples taken
in it (in process) and the nodes' cumulative counters after it (over ROS)). Started again
with the same FILE and the same run (policy hash, configurations, horizon, limits and prune
defaults; in process also the first seed, the budget rule, the sampling rates, threads,
device and dtype: the ``key``), it reads those lines back and runs only the (seed,
configuration) pairs not yet done; the final JSON is the same as one uninterrupted run's,
except ``wall_s`` (the episodes' own wall time, summed over the attempts; start-ups are not
in it), the counters (summed over the attempts: each attempt's processes count from zero)
and ``attempts`` with ``attempt_info`` (when more than one ran episodes: each one's machine
and code revision, recorded with its first episode; step times pool every attempt's).

A line written before episodes kept their per-step times (``EpisodeRecord.step_ms`` /
``llm_ms``) gets them from its own step rows; one written before episodes kept their goal
progress has none (``goal_parts`` / ``most_parts_held`` / ``grasped`` None), so a run
resumed across that change counts progress over its newer episodes only
(``goal_progress.episodes`` says how many). A line cut short by a kill is ignored (that
episode runs again). A FILE written by another run is refused with the difference, never
mixed in.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord, StepRecord


@dataclass
class Journal:
    """The episodes already done, read from ``path``; ``record`` appends one more."""

    path: str
    key: Dict[str, Any]
    done: Set[Tuple[int, str]] = field(default_factory=set)
    wall_s: float = 0.0
    #: per earlier attempt, the last counters it reported (summed into the result)
    counters: Dict[str, Dict[str, Dict[str, int]]] = field(default_factory=dict)
    attempt: int = 0
    #: hit-rate samples of every episode read back or recorded (in-process runs)
    hit_rates: List[float] = field(default_factory=list)
    #: where each attempt ran (machine, code revision): written with its first episode
    infos: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    info: Optional[Dict[str, Any]] = None  # this attempt's

    @classmethod
    def open(cls, path: str, key: Dict[str, Any], runs: Dict[str, ConfigRun],
             seeds: Optional[Sequence[int]] = None,
             info: Optional[Dict[str, Any]] = None) -> "Journal":
        """Read ``path`` (if it exists) into ``runs``, only the episodes of ``seeds`` when
        given (a rerun with fewer episodes leaves the others in the file, out of the
        result); ValueError when it belongs to another run. ``info``: where this attempt
        runs (not part of the key: a resumed run may continue on another machine or a
        later commit, and the result then names each)."""
        journal = cls(path, json.loads(json.dumps(key)), info=info)
        lines: List[str] = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        if len(lines) <= 1 and (not lines or _key_line(lines[0]) is None):
            # new, or its key line torn by a kill
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps({"key": journal.key}) + "\n")
            return journal
        entries = []
        for number, line in enumerate(lines, 1):
            try:
                entries.append(json.loads(line))
            except ValueError:
                if number != len(lines):  # only the last line can be cut by a kill
                    raise ValueError(f"{path}: line {number} is not JSON")
        if not entries or "key" not in entries[0]:
            raise ValueError(f"{path}: no run key on its first line")
        check_key(path, entries[0]["key"], journal.key)
        wanted = None if seeds is None else set(seeds)
        for entry in entries[1:]:
            if wanted is None or entry["episode"]["seed"] in wanted:
                journal._read(entry, runs)
        journal.attempt = 1 + max((e.get("attempt", 0) for e in entries[1:]), default=-1)
        if len(entries) < len(lines):  # a kill tore the last line: drop it
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines[:-1]) + "\n")
        return journal

    def _read(self, entry: Dict[str, Any], runs: Dict[str, ConfigRun]) -> None:
        config = entry["config"]
        if config not in runs:
            return
        record = EpisodeRecord(**entry["episode"])
        steps = [StepRecord(**s) for s in entry["steps"]]
        if "step_ms" not in entry["episode"]:  # written before the records kept the times
            for step in steps:
                record.note_times(step)
        runs[config].episodes.append(record)
        runs[config].steps.extend(steps)
        self.done.add((record.seed, config))
        self.hit_rates.extend(float(h) for h in entry.get("hit_rates", ()))
        attempt = str(entry.get("attempt", 0))
        if "attempt_info" in entry:
            self.infos[attempt] = entry["attempt_info"]
        self.counters[attempt] = entry.get("counters", {})
        self.wall_s += float(entry.get("wall_s", 0.0))

    def record(self, config: str, episode: EpisodeRecord, steps: List[StepRecord],
               counters: Dict[str, Dict[str, int]], wall_s: float,
               hit_rates: Sequence[float] = ()) -> None:
        """Append one finished episode (``wall_s``: its own wall time)."""
        entry = {"config": config, "attempt": self.attempt, "episode": asdict(episode),
                 "steps": [asdict(s) for s in steps], "counters": counters,
                 "wall_s": wall_s}
        if hit_rates:
            entry["hit_rates"] = [float(h) for h in hit_rates]
        if self.info is not None and str(self.attempt) not in self.infos:
            entry["attempt_info"] = self.infos[str(self.attempt)] = self.info
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.counters[str(self.attempt)] = counters
        self.wall_s += wall_s
        self.hit_rates.extend(float(h) for h in hit_rates)

    @property
    def attempts(self) -> int:
        """How many attempts ran episodes (this one included once it recorded one)."""
        return len(self.counters)

    def summed_counters(self, name: str) -> Dict[str, int]:
        """Counter ``name`` (e.g. ``executor``) summed over every attempt."""
        total: Dict[str, int] = {}
        for per_attempt in self.counters.values():
            for key, value in per_attempt.get(name, {}).items():
                total[key] = total.get(key, 0) + int(value)
        return dict(sorted(total.items()))


def in_seed_order(runs: Dict[str, ConfigRun], seeds: Sequence[int]) -> None:
    """Episodes read back come first: put every configuration's in ``seeds`` order again
    (the paired comparisons match episodes by position)."""
    position = {seed: i for i, seed in enumerate(seeds)}
    for run in runs.values():
        run.episodes.sort(key=lambda e: position[e.seed])


def _key_line(line: str) -> Optional[Dict[str, Any]]:
    """The run key a journal's first line holds; None when a kill tore it."""
    try:
        held = json.loads(line)
    except ValueError:
        return None
    return held.get("key") if isinstance(held, dict) else None


def check_key(path: str, held: Dict[str, Any], key: Dict[str, Any]) -> None:
    """ValueError naming the differences when the journal at ``path`` (its first line
    ``held``) belongs to another run than ``key``."""
    key = json.loads(json.dumps(key))
    if held != key:
        diff = sorted(k for k in set(held) | set(key) if held.get(k) != key.get(k))
        raise ValueError(f"{path} belongs to another run (differs in {', '.join(diff)})")


def check_journal(path: str, key: Dict[str, Any]) -> None:
    """Before a run starts: ValueError when the journal at ``path`` exists and belongs to
    another run than ``key`` (a missing file or a torn first line is left to
    ``Journal.open``)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        held = _key_line(f.readline())
    if held is not None:
        check_key(path, held, key)


#: in process, the arguments that change an episode or what it records besides journal_key's
#: (the simulator is built with the run's first seed; FastV and random follow the budget
#: rule; the action deviation and hit rate are sampled every l1_every / hit_every steps)
DIRECT_KEY = ("seed", "budget_match", "fastv_budget", "l1_every", "hit_every", "hit_k",
              "threads", "device", "dtype")


def journal_key(args: Any) -> Dict[str, Any]:
    """What must match for a journal to be resumed: everything that changes an episode."""
    from specprune_ros.eval.configurations import model_hash
    key = {"policy_hash": model_hash(args.policy), "task": args.task, "via": args.via,
           "configs": list(args.configs), "horizon": args.horizon,
           "executor_limits": getattr(args, "executor_limits", None),
           "prune_defaults": [list(p) for p in (getattr(args, "prune", ()) or ())],
           "claim": bool(getattr(args, "claim", False))}
    convention = getattr(args, "gripper_convention", "env")
    if convention != "env":  # keyed only off its default, so older journals still resume
        key["gripper_convention"] = convention
    if args.via == "direct":  # what else changes an in-process episode or its record
        key.update({name: getattr(args, name) for name in DIRECT_KEY})
        if args.budget_match == "mean" and not args.fastv_budget:
            # the baselines keep SpecPrune's mean over the whole run: more episodes, another
            # budget for the baselines' later episodes than for the journalled ones
            key["episodes"] = args.episodes
    return key
