"""Statistics of the closed-loop evaluation: binomial and paired confidence intervals.

Pure Python + numpy (no torch, no ROS), so the numbers can be checked against published
values. Success rates get the Wilson score interval (Wilson 1927), which stays inside
[0, 1] and keeps its coverage at 0 % and 100 %, unlike the normal (Wald) interval. The
paired difference of two configurations run on the same episode seeds gets Newcombe's
hybrid score interval (Newcombe 1998, Statistics in Medicine 17, 2635-2650, "Improved
confidence intervals for the difference between binomial proportions based on paired
data", method 10: the two marginal Wilson intervals combined square-and-add with a
continuity-corrected estimate of their correlation), the interval the README's tables
report, and the exact McNemar test on the discordant pairs. The Agresti-Min interval
(Agresti & Min 2005, Statistics in Medicine 24: Wald after adding 1/2 to every cell), the
one reported before, stays in the JSON next to it.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

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

    The Wald interval after adding 1/2 to each cell of the 2x2 table (so n -> n + 2); kept
    next to Newcombe's interval, which the tables report.
    """
    if not 0 <= only_first + only_second <= n:
        raise ValueError(f"need 0 <= discordant pairs <= n, got {only_first}+{only_second} "
                         f"of {n}")
    b, c, m = only_first + 0.5, only_second + 0.5, n + 2.0
    d = (b - c) / m
    half = z * math.sqrt(max((b + c) - (b - c) ** 2 / m, 0.0)) / m
    return max(-1.0, d - half), min(1.0, d + half)


def newcombe_paired_interval(both: int, only_first: int, only_second: int, neither: int,
                             z: float = Z95) -> Tuple[float, float]:
    """Newcombe's method 10 interval of p_first - p_second for paired binary outcomes.

    With the 2x2 table (a = both succeed, b = only first, c = only second, d = neither),
    p1 = (a + b) / n, p2 = (a + c) / n and Wilson intervals (l1, u1), (l2, u2):
    lower = (p1 - p2) - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2),
    upper = (p1 - p2) + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2),
    where phi estimates the correlation of the two margins from A = ad - bc with Newcombe's
    continuity correction: (A - n/2) / sqrt(...) when A > n/2, 0 when 0 <= A <= n/2, A /
    sqrt(...) when A < 0, and 0 when a margin is empty. Not zero-width when both
    configurations agree on every episode (the width then reflects n only)."""
    cells = (both, only_first, only_second, neither)
    if min(cells) < 0:
        raise ValueError(f"2x2 counts must be >= 0, got {cells}")
    n = sum(cells)
    if n == 0:
        return -1.0, 1.0
    first, second = both + only_first, both + only_second  # successes of each
    p1, p2 = first / n, second / n
    l1, u1 = wilson_interval(first, n, z)
    l2, u2 = wilson_interval(second, n, z)
    phi = _margin_correlation(both, only_first, only_second, neither)
    down = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0))
    up = math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0))
    return max(-1.0, p1 - p2 - down), min(1.0, p1 - p2 + up)


def _margin_correlation(a: int, b: int, c: int, d: int) -> float:
    """Newcombe's continuity-corrected phi of the paired 2x2 table (see above)."""
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    n, cross = a + b + c + d, a * d - b * c
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(margins)
    return 0.0 if cross >= 0 else cross / math.sqrt(margins)


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: binomial(discordant, 1/2) on the discordant pairs."""
    m = only_first + only_second
    if m == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return min(1.0, 2.0 * tail)


def paired_comparison(first: Sequence[bool], second: Sequence[bool]) -> Dict[str, Any]:
    """first vs second on the same seeds: counts, rate difference, its 95 % CI
    (``difference_ci95``: Newcombe's method 10; ``difference_ci95_agresti_min`` too),
    McNemar's exact p."""
    counts = paired_counts(first, second)
    n = len(first)
    diff = (counts["only_first"] - counts["only_second"]) / n if n else 0.0
    newcombe = newcombe_paired_interval(counts["both_success"], counts["only_first"],
                                        counts["only_second"], counts["both_failure"])
    agresti = paired_difference_interval(counts["only_first"], counts["only_second"], n)
    return dict(counts, episodes=n, difference=diff, difference_ci95=list(newcombe),
                difference_ci95_method="newcombe1998_method10",
                difference_ci95_agresti_min=list(agresti),
                mcnemar_p=mcnemar_exact_p(counts["only_first"], counts["only_second"]))


def latency_summary(values_ms: Sequence[float]) -> Dict[str, float]:
    """Mean, median and 95th percentile (linear interpolation) of step times; NaN if none."""
    if len(values_ms) == 0:
        return {"mean": math.nan, "median": math.nan, "p95": math.nan}
    arr = np.asarray(values_ms, dtype=np.float64)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)),
            "p95": float(np.percentile(arr, 95))}
