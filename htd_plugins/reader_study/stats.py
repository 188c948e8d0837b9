"""Statistics of a reader study: exact binomial intervals and tests, Mann-Whitney U, Fleiss' kappa.

"Indistinguishable" follows the paper: a reader (or the pool) cannot tell synthetic from real
when the 95% Clopper-Pearson interval of their accuracy includes 50%.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


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
