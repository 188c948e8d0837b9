"""Statistics of a reader study: exact binomial intervals and tests, Mann-Whitney U, Fleiss' kappa.

"Indistinguishable" follows the paper: a reader (or the pool) cannot tell synthetic from real
when the 95% Clopper-Pearson interval of their accuracy includes 50%.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` interval of a binomial proportion.

    Args:
        k: successes.
        n: trials (> 0).
        alpha: 0.05 for a 95% interval.

    Returns:
        (lower, upper); e.g. 7 of 10 gives (0.3475, 0.9333).
    """
    from scipy.stats import beta

    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def binom_p(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test p-value of ``k`` successes in ``n`` trials against ``p``."""
    from scipy.stats import binomtest

    return float(binomtest(k, n, p, alternative="two-sided").pvalue)


def proportion(k: int, n: int) -> dict[str, Any]:
    """``k/n`` with its 95% Clopper-Pearson interval (``None`` values when ``n == 0``)."""
    if n == 0:
        return {"k": 0, "n": 0, "estimate": None, "ci95": None}
    return {"k": k, "n": n, "estimate": k / n, "ci95": list(clopper_pearson(k, n))}


def accuracy_summary(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy (CI, exact test vs 50%), sensitivity and specificity for "synthetic".

    Args:
        answers: rows with ``call`` and ``truth`` (each ``real`` or ``synthetic``).
    """
    n = len(answers)
    correct = sum(a["call"] == a["truth"] for a in answers)
    syn = [a for a in answers if a["truth"] == "synthetic"]
    real = [a for a in answers if a["truth"] == "real"]
    acc = proportion(correct, n)
    acc["p_value_vs_50"] = binom_p(correct, n) if n else None
    return {
        "n_answers": n,
        "accuracy": acc,
        "sensitivity": proportion(sum(a["call"] == "synthetic" for a in syn), len(syn)),
        "specificity": proportion(sum(a["call"] == "real" for a in real), len(real)),
        "indistinguishable": bool(n and acc["ci95"][0] <= 0.5 <= acc["ci95"][1]),
    }


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Two-sided Mann-Whitney U test of ``x`` vs ``y`` (scipy); U is that of ``x``."""
    from scipy.stats import mannwhitneyu

    if not x or not y:
        return {"u": None, "p_value": None, "n_x": len(x), "n_y": len(y)}
    res = mannwhitneyu(list(x), list(y), alternative="two-sided")
    p = float(res.pvalue)
    return {
        "u": float(res.statistic),
        "p_value": None if math.isnan(p) else p,
        "n_x": len(x),
        "n_y": len(y),
    }


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of rating counts.

    Every row must sum to the same number of raters (>= 2). Returns ``None`` when undefined
    (no items, or every rating in one category so chance agreement is 1).
    """
    if not counts:
        return None
    m = sum(counts[0])
    if m < 2 or any(sum(row) != m for row in counts):
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n_items = len(counts)
    p_bar = sum((sum(c * c for c in row) - m) / (m * (m - 1)) for row in counts) / n_items
    totals = [sum(row[j] for row in counts) for j in range(len(counts[0]))]
    p_e = sum((t / (n_items * m)) ** 2 for t in totals)
    if math.isclose(p_e, 1.0):
        return None
    return (p_bar - p_e) / (1 - p_e)


def agreement(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fleiss' kappa of the real/synthetic calls over the images every reader rated."""
    readers = sorted({a["reader_id"] for a in answers})
    by_image: dict[str, list[str]] = {}
    for a in answers:
        by_image.setdefault(a["image_id"], []).append(a["call"])
    full = [calls for calls in by_image.values() if len(calls) == len(readers)]
    out: dict[str, Any] = {"n_readers": len(readers), "n_images": len(full), "fleiss_kappa": None}
    if len(readers) < 2:
        out["note"] = "needs at least two readers"
    elif not full:
        out["note"] = "no image was rated by every reader"
    else:
        table = [[c.count("real"), c.count("synthetic")] for c in full]
        out["fleiss_kappa"] = fleiss_kappa(table)
        if out["fleiss_kappa"] is None:
            out["note"] = "undefined: every call was the same"
    return out


#: The power statement's settings: the test is the report's own decision rule (the exact 95%
#: Clopper-Pearson interval excludes 50%, i.e. the equal-tailed exact binomial test at 0.05),
#: at 80% power; a study is *underpowered* when it could not detect a reader at 65% accuracy.
POWER_ALPHA, POWER_TARGET, TARGET_ACCURACY = 0.05, 0.8, 0.65


def _rejection_k(n: int, alpha: float) -> int | None:
    """Smallest k whose Clopper-Pearson interval lies above 50% (k/n significantly above
    chance); by symmetry k <= n - that is significantly below. None: no k of n rejects."""
    from scipy.stats import binom

    ks = np.arange(n + 1)
    upper_tail = binom.sf(ks - 1, n, 0.5)  # P(X >= k | p = 0.5)
    hits = np.flatnonzero(upper_tail < alpha / 2)
    return int(hits[0]) if len(hits) else None


def detection_power(accuracy: float, n: int, alpha: float = POWER_ALPHA) -> float:
    """Exact probability that a reader of true ``accuracy`` over ``n`` independent answers
    is found distinguishable (95% Clopper-Pearson interval excluding 50%).

    Summed from the binomial distribution over the test's rejection region (no normal
    approximation). 0.0 when no outcome of ``n`` answers can reject (n <= 5 at alpha 0.05).
    """
    from scipy.stats import binom

    k = _rejection_k(n, alpha)
    if k is None:
        return 0.0
    return float(binom.sf(k - 1, n, accuracy) + binom.cdf(n - k, n, accuracy))


def min_detectable_accuracy(
    n: int, alpha: float = POWER_ALPHA, power: float = POWER_TARGET
) -> float | None:
    """Smallest true accuracy >= 50% that ``n`` answers detect with probability ``power``.

    Solved exactly (:func:`detection_power` is increasing in the accuracy above 50%) with
    scipy's ``brentq``. E.g. n = 8: 0.973 (only 8/8 rejects); n = 120: about 0.63. None when
    even a perfect reader could not be detected (n <= 5 at alpha 0.05, or power too high).
    """
    from scipy.optimize import brentq

    if n < 1 or detection_power(1.0, n, alpha) < power:
        return None
    return float(brentq(lambda p: detection_power(p, n, alpha) - power, 0.5, 1.0, xtol=1e-6))


@functools.lru_cache(maxsize=8)
def answers_needed(
    accuracy: float = TARGET_ACCURACY, alpha: float = POWER_ALPHA, power: float = POWER_TARGET
) -> int:
    """Fewest answers from which on every n detects ``accuracy`` with ``power`` (the exact
    power saw-tooths with n, so this is the start of the run of n that all reach it).

    For 65% accuracy, alpha 0.05, power 0.8 this is 97 answers. The normal-approximation
    sample size of a one-sample test of a proportion, n = (z_{1-a/2} sqrt(p0 q0) + z_{1-b}
    sqrt(p1 q1))^2 / (p1 - p0)^2 (Chow, Shao & Wang, *Sample Size Calculations in Clinical
    Research*, 2nd ed., 2008, section 4.1), gives 85 with p0 = 0.5, p1 = 0.65; the exact
    equal-tailed test is conservative (its real size is below 0.05), so it needs more.
    """
    last_short = 0
    for n in range(1, 4000):
        if detection_power(accuracy, n, alpha) < power:
            last_short = n
        elif n > 2 * last_short + 50:  # well past the saw-tooth
            break
    return last_short + 1


def power_summary(n: int) -> dict[str, Any]:
    """What ``n`` answers can detect: the smallest detectable accuracy, the answers needed to
    detect :data:`TARGET_ACCURACY`, and whether ``n`` is below that (``underpowered``)."""
    needed = answers_needed()
    mda = min_detectable_accuracy(n) if n else None
    return {
        "alpha": POWER_ALPHA,
        "power": POWER_TARGET,
        "min_detectable_accuracy": mda,
        "target_accuracy": TARGET_ACCURACY,
        "answers_needed": needed,
        "underpowered": n < needed,
        "method": "exact binomial power of the equal-tailed Clopper-Pearson decision",
    }
