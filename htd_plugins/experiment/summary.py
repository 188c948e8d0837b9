"""Means, 95 % intervals and verdicts of an experiment over its seeds and bootstrap resamples.

A score of one arm is measured once per seed (the arm trained and sampled again), each with
B bootstrap resamples of the images it is computed on (:mod:`htd_core.bootstrap`: FD and KID
resample the held-out and synthetic patches, IoU the held-out patches, layout adherence the
synthetic ones). The reported value is the mean over seeds; the interval is the 95 %
percentile interval of all seeds' resamples pooled, each seed's resamples first shifted onto
its own value when the statistic's bootstrap is biased (FD). That interval covers the spread
of ONE run's score over seeds and over resamples of the test images, so it is wider than an
interval of the mean: a verdict it gives holds for a single run. Without resamples the
interval is Student's t over the seeds' values (two seeds or more that differ), else there is
none (one seed, or a score whose inputs every seed shares, such as the reference rows).

A comparison of two arms is formed seed by seed and resample by resample (the arms of one
seed share the resamples: same seed, same set sizes), pooled the same way, and read as:

- **holds**: the interval of the difference lies inside the claim's region (e.g. below 0 for
  "FD(a) < FD(b)");
- **does not hold**: it lies outside the region;
- **tie**: it straddles or touches the region's edge (the data cannot tell).

With no interval at all (one seed, no bootstrap) the verdict reads the point values and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from htd_core import bootstrap as boot

Getter = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Metric:
    """One score of one evaluator's result: its value and its bootstrap resamples.

    Attributes:
        label: how tables and verdicts name it (``FD Inception``, ``mIoU``).
        point: metrics -> the value (None: not measured).
        resamples: metrics -> its bootstrap values (None: none).
        center: shift each seed's resamples onto its value (a biased bootstrap: FD).
    """

    label: str
    point: Getter
    resamples: Getter = lambda m: None
    center: bool = False


@dataclass
class Estimate:
    """A mean over seeds and its interval (``ci`` None: none could be formed)."""

    mean: float | None
    ci: list[float] | None = None
    values: list[float | None] = field(default_factory=list)
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci": self.ci, "values": self.values, "method": self.method}


def _pool(parts: Sequence[tuple[float | None, Any]], center: bool) -> Estimate:
    """The estimate from per-seed (value, resamples) pairs (module docstring)."""
    values = [None if p is None or not np.isfinite(p) else float(p) for p, _ in parts]
    points = [v for v in values if v is not None]
    if not points:
        return Estimate(None, None, values, "not measured")
    mean = float(np.mean(points))
    draws = []
    for p, r in parts:
        r = None if r is None else np.asarray([np.nan if x is None else x for x in r], float)
        if p is None or r is None or not np.isfinite(r).any():
            draws = []
            break
        r = r[np.isfinite(r)]
        draws.append(r - r.mean() + p if center else r)
    if draws:
        n = len(draws)
        how = f"bootstrap, {n} seed{'s' * (n > 1)} pooled ({sum(map(len, draws))} resamples)"
        return Estimate(mean, boot.interval(np.concatenate(draws)), values, how)
    if len(points) >= 2 and np.ptp(points) > 0:
        from scipy import stats

        half = stats.t.ppf(0.5 + boot.LEVEL / 2, len(points) - 1) * np.std(points, ddof=1)
        half /= np.sqrt(len(points))
        return Estimate(mean, [mean - half, mean + half], values, f"t over {len(points)} seeds")
    if len(points) >= 2:  # a score of inputs every seed shares (a reference row): no spread
        return Estimate(mean, None, values, f"the same value at {len(points)} seeds, no interval")
    return Estimate(mean, None, values, "one value, no interval")


def estimate(per_seed: Mapping[Any, Mapping[str, Any]], metric: Metric) -> Estimate:
    """Mean and interval of ``metric`` over the seeds' results ``{seed: metrics}``."""
    parts = [(read(metric.point, m), read(metric.resamples, m)) for m in per_seed.values()]
    return _pool(parts, metric.center)


def difference(a: Mapping[Any, Mapping[str, Any]], b: Mapping[Any, Mapping[str, Any]],
               metric: Metric, scale: float = 1.0,
               metric_b: Metric | None = None) -> Estimate:  # fmt: skip
    """``metric(a) - scale * metric_b(b)`` (``metric_b`` defaults to ``metric``; another one
    compares two scores of one result, e.g. DeepLabv3+ real + synthetic against real) paired
    by seed and by resample (the seeds both have); a seed whose resamples differ in number
    gives its values only."""
    mb = metric_b or metric
    parts = []
    for seed in [s for s in a if s in b]:
        pa, pb = read(metric.point, a[seed]), read(mb.point, b[seed])
        ra, rb = read(metric.resamples, a[seed]), read(mb.resamples, b[seed])
        point = None if pa is None or pb is None else pa - scale * pb
        draws = None
        if ra is not None and rb is not None and len(ra) == len(rb):
            draws = [
                None if x is None or y is None else x - scale * y
                for x, y in zip(ra, rb, strict=True)
            ]
        parts.append((point, draws))
    return _pool(parts, metric.center)


#: Relative distance from an edge within which an interval end touches it (a difference of two
#: equal values is 0 up to floating-point rounding, not "below 0").
TOUCH = 1e-9


def verdict(est: Estimate, lower: float | None = None, upper: float | None = None) -> str:
    """``holds`` / ``tie`` / ``does not hold`` for the claim "the difference lies in
    (lower, upper)" (module docstring); ``not measured`` without a value."""
    if est.mean is None:
        return "not measured"
    if est.ci is None:
        inside = (lower is None or est.mean > lower) and (upper is None or est.mean < upper)
        return f"{'holds' if inside else 'does not hold'} (point values, no interval)"
    lo, hi = est.ci
    eps = TOUCH * max(1.0, *(abs(v) for v in (lo, hi)))  # float noise touches the edge
    if (lower is None or lo > lower + eps) and (upper is None or hi < upper - eps):
        return "holds"
    if (upper is not None and lo > upper + eps) or (lower is not None and hi < lower - eps):
        return "does not hold"
    return "tie"  # the interval reaches the edge: it cannot tell


def read(getter: Getter, metrics: Mapping[str, Any] | None) -> Any:
    """``getter(metrics)``, None where a key is missing (an evaluator or setting not run)."""
    try:
        return getter(metrics or {})
    except (KeyError, TypeError, IndexError):
        return None


def resamples_of(block: Mapping[str, Any], name: str) -> Any:
    """``block["bootstrap"][name]`` (or ``block["bootstrap"]`` when it is the list itself)."""
    b = block.get("bootstrap")
    return b.get(name) if isinstance(b, Mapping) else b


# -- the experiment's metrics -------------------------------------------------------------
def fd(encoder: str, label: str) -> Metric:
    return Metric(f"FD {label}", lambda m: m["encoders"][encoder]["fd"],
                  lambda m: m["encoders"][encoder].get("fd_bootstrap"), center=True)  # fmt: skip


def kid(encoder: str, label: str) -> Metric:
    return Metric(f"KID {label}", lambda m: m["encoders"][encoder]["kid"],
                  lambda m: m["encoders"][encoder].get("kid_bootstrap"))  # fmt: skip


def reference(encoder: str, key: str, label: str) -> Metric:
    """A reference row of the frechet evaluator (no resamples: t over seeds)."""
    return Metric(label, lambda m: m["encoders"][encoder][key])


def iou(setting: str) -> Metric:
    return Metric(f"mIoU ({setting})", lambda m: m["settings"][setting]["mean_iou"],
                  lambda m: resamples_of(m["settings"][setting], "mean_iou"))  # fmt: skip


def adherence(part: str = "adherence") -> Metric:
    return Metric(f"layout adherence ({part})", lambda m: m[part]["mean_iou"],
                  lambda m: resamples_of(m[part], "mean_iou"))  # fmt: skip
