"""Bootstrap resamples and intervals shared by every evaluator and by the experiment.

**The seeding contract.** Resample index sets depend only on ``(seed, n, stream)``: the seed,
the number of items resampled (held-out images, synthetic images) and a constant naming the
role. They are drawn from ``numpy.random.default_rng([seed, n, STREAM + stream])`` and the
first ``b`` resamples are the same whatever ``B`` is. Two synthetic sets scored against one
held-out set with one seed therefore see the *same* resamples of the held-out images (and,
when they hold as many images generated from the same layouts in the same order, the same
resamples of those too), so a caller may subtract their bootstrap samples element by element
for an interval of the paired difference (:func:`paired_interval`). The experiment relies on
this to say whether one arm beats another.

Intervals are 95 % percentile intervals (Efron & Tibshirani 1993, ch. 13). A statistic whose
bootstrap values are biased (the Frechet distance: a resample holds about 63 % distinct
images, so its covariance is poorer and its FD larger) is given ``center=`` its value on the
full sets, and the interval is shifted by the bootstrap's estimate of the bias (mean of the
resamples minus that value; ibid. ch. 10).

Imports numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A constant seed word, so these draws share no stream with training or sampling.
STREAM = 0xB007
#: The intervals' coverage.
LEVEL = 0.95


def resample_indices(seed: int, n: int, b: int, *, stream: int = 0) -> np.ndarray:
    """``b`` resamples of ``n`` indices with replacement: int64 ``b x n``, a function of
    ``(seed, n, stream)`` only (module docstring). ``stream`` tells roles apart (the held-out
    set is 0, a synthetic set 1), so two sets of equal size are not resampled alike."""
    rng = np.random.default_rng([int(seed), int(n), STREAM + int(stream)])
    return rng.integers(0, int(n), size=(int(b), int(n)))


def resample_counts(seed: int, n: int, b: int, *, stream: int = 0) -> np.ndarray:
    """The same resamples as :func:`resample_indices`, as how often each item is drawn:
    int64 ``b x n`` (each row sums to ``n``)."""
    idx = resample_indices(seed, n, b, stream=stream)
    return (
        np.stack([np.bincount(row, minlength=int(n)) for row in idx])
        if len(idx)
        else (np.zeros((0, int(n)), np.int64))
    )


def _finite(samples: Sequence[float | None] | np.ndarray) -> np.ndarray:
    values = np.asarray([np.nan if v is None else v for v in samples], dtype=np.float64)
    return values[np.isfinite(values)]


def interval(
    samples: Sequence[float | None] | np.ndarray, *, center: float | None = None
) -> list[float] | None:
    """The 95 % percentile interval ``[lo, hi]`` of bootstrap samples (finite ones; None when
    there is none). ``center``: the statistic on the full data; the interval is then shifted
    by ``center - mean(samples)``, removing the bootstrap's estimate of its bias."""
    values = _finite(samples)
    if not values.size:
        return None
    tail = (1.0 - LEVEL) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    shift = 0.0 if center is None else float(center) - float(values.mean())
    return [float(lo + shift), float(hi + shift)]


def paired_interval(
    a: Sequence[float | None] | np.ndarray,
    b: Sequence[float | None] | np.ndarray,
    *,
    center: float | None = None,
) -> list[float] | None:
    """Interval of ``a - b`` from bootstrap samples drawn with the same resamples (same seed,
    same sizes: module docstring), element by element; pairs where either is missing are
    dropped. ``center``: the difference on the full data (see :func:`interval`).

    Raises:
        ValueError: the sample lists differ in length (not the same resamples).
    """
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap samples differ in length: {len(a)} and {len(b)}")
    pairs = [
        float(x) - float(y)
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)
    ]
    return interval(pairs, center=center)
