"""Statistics of the closed-loop evaluation: binomial and paired confidence intervals.

Pure Python + numpy (no torch, no ROS), so the numbers can be checked against published
values. Success rates get the Wilson score interval (Wilson 1927), which stays inside
[0, 1] and keeps its coverage at 0 % and 100 %, unlike the normal (Wald) interval. The
paired difference of two configurations run on the same episode seeds gets the Agresti-Min
interval (Agresti & Min 2005, Statistics in Medicine 24, "Simple improved confidence
intervals for comparing matched proportions": Wald after adding 1/2 to every cell) and the
exact McNemar test on the discordant pairs.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> Tuple[float, float]:
    """Wilson score interval (lo, hi) of a success rate; (0, 1) when n == 0."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # exact bounds at the ends (the formula gives them up to rounding)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def paired_counts(first: Sequence[bool], second: Sequence[bool]) -> Dict[str, int]:
    """Counts of the 2x2 table of two outcomes on the same episodes."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need equal lengths, got {len(first)} and "
                         f"{len(second)}")
    pairs = list(zip(map(bool, first), map(bool, second)))
    return {"both_success": sum(a and b for a, b in pairs),
            "only_first": sum(a and not b for a, b in pairs),
            "only_second": sum(b and not a for a, b in pairs),
            "both_failure": sum(not a and not b for a, b in pairs)}


def paired_difference_interval(only_first: int, only_second: int, n: int,
                               z: float = Z95) -> Tuple[float, float]:
    """Agresti-Min interval of p_first - p_second for paired binary outcomes.

    The Wald interval after adding 1/2 to each cell of the 2x2 table (so n -> n + 2).
    Unlike Newcombe's score-based interval it does not collapse to a zero width when the two
    configurations agree on every episode, which is the common case here.
    """
    if not 0 <= only_first + only_second <= n:
        raise ValueError(f"need 0 <= discordant pairs <= n, got {only_first}+{only_second} "
                         f"of {n}")
    b, c, m = only_first + 0.5, only_second + 0.5, n + 2.0
    d = (b - c) / m
    half = z * math.sqrt(max((b + c) - (b - c) ** 2 / m, 0.0)) / m
    return max(-1.0, d - half), min(1.0, d + half)


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: binomial(discordant, 1/2) on the discordant pairs."""
    m = only_first + only_second
    if m == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return min(1.0, 2.0 * tail)


def paired_comparison(first: Sequence[bool], second: Sequence[bool]) -> Dict[str, float]:
    """first vs second on the same seeds: counts, rate difference, its 95 % CI, McNemar p."""
    counts = paired_counts(first, second)
    n = len(first)
    diff = (counts["only_first"] - counts["only_second"]) / n if n else 0.0
    lo, hi = paired_difference_interval(counts["only_first"], counts["only_second"], n)
    return dict(counts, episodes=n, difference=diff, difference_ci95=[lo, hi],
                mcnemar_p=mcnemar_exact_p(counts["only_first"], counts["only_second"]))


def latency_summary(values_ms: Sequence[float]) -> Dict[str, float]:
    """Mean, median and 95th percentile (linear interpolation) of step times; NaN if none."""
    if len(values_ms) == 0:
        return {"mean": math.nan, "median": math.nan, "p95": math.nan}
    arr = np.asarray(values_ms, dtype=np.float64)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)),
            "p95": float(np.percentile(arr, 95))}
