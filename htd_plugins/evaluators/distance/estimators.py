"""Estimators beside the plain Frechet distance: bias-corrected FD-infinity (Chong & Forsyth
2020), the Kernel Inception Distance (Binkowski et al. 2018), and the warning when a set is
too small for a full-rank covariance."""

from __future__ import annotations

import numpy as np
import torch

from htd_core.errors import InputError
from htd_plugins.evaluators.distance.fd_math import SqrtCov, frechet_distance, statistics


def sample_size_warning(
    n: int, dim: int, what: str, *, fd_inf_computed: bool = False
) -> str | None:
    """A one-line message when ``n`` samples cannot give a full-rank ``dim``-dimensional
    covariance; it recommends FD-infinity as computed (``fd_inf``) or the option computing it."""
    if n <= dim:
        fix = (
            "read fd_inf, the bias-corrected FD-infinity computed beside it"
            if fd_inf_computed
            else "set fd_inf=true (htd evaluate -o frechet.fd_inf=true) for the bias-corrected "
            "FD-infinity"
        )
        return (
            f"{what}: {n} samples for {dim}-dimensional features; the covariance is rank "
            f"deficient and FD is biased upwards: use more than {dim} samples, compare only "
            f"values computed with equal N, or {fix}"
        )
    return None


def fd_infinity(
    mu_real: np.ndarray,
    root_real: SqrtCov,
    synthetic: np.ndarray,
    *,
    num_points: int = 15,
    min_n: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Bias-corrected FD (Chong & Forsyth 2020, as in dgm-eval): FD of growing subsets of the
    synthetic features against the full real statistics, a line fitted to FD vs 1/N, and its
    value at 1/N = 0.

    Returns ``{"fd_inf": intercept, "slope": ..., "n_min": ..., "n_max": ..., "points": k}``.
    """
    n = len(synthetic)
    lo = max(min_n if min_n is not None else n // 5, 2)
    if n < 4 or lo >= n:
        raise InputError(f"FD-infinity needs at least 4 synthetic samples and min_n < N, got N={n}")
    sizes = np.unique(np.linspace(lo, n, num_points).astype(int))
    perm = np.random.default_rng(seed).permutation(n)
    fds = []
    for size in sizes:
        mu, sigma = statistics(synthetic[perm[:size]])
        fds.append(frechet_distance(mu_real, root_real, mu, sigma))
    slope, intercept = np.polyfit(1.0 / sizes, np.asarray(fds), 1)
    return {
        "fd_inf": float(intercept),
        "slope": float(slope),
        "n_min": int(sizes[0]),
        "n_max": int(sizes[-1]),
        "points": len(sizes),
    }


def kernel_inception_distance(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``,
    averaged over random subsets of equal size from each set.

    Returns ``{"kid": mean, "kid_std": std over subsets, "subset_size": m}``.
    """
    x = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(synthetic), dtype=torch.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise InputError(f"KID needs at least 2 samples per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        xs = x[torch.from_numpy(rng.choice(len(x), m, replace=False))]
        ys = y[torch.from_numpy(rng.choice(len(y), m, replace=False))]
        kxx = (xs @ xs.T / d + 1) ** 3
        kyy = (ys @ ys.T / d + 1) ** 3
        kxy = (xs @ ys.T / d + 1) ** 3
        off = m * (m - 1)
        mmd = (kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off
        values.append(float(mmd - 2 * kxy.mean()))
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values)), "subset_size": int(m)}


def optional_estimates(
    mu_real: np.ndarray,
    root_real: SqrtCov,
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    fd_inf: bool,
    kid: bool,
    fd_inf_points: int,
    kid_subsets: int,
    kid_subset_size: int | None,
    seed: int,
) -> dict[str, float]:
    """The ``frechet`` evaluator's optional metrics: ``fd_inf`` (+ slope, n_min) and ``kid``
    (+ std, subset size) of the synthetic features against the reference (its statistics and,
    for KID, its features ``real``). ``kid_subset_size`` None: half the smaller set, at least
    2 and at most 1000, so the subsets differ and ``kid_std`` means something."""
    out: dict[str, float] = {}
    if fd_inf:
        inf = fd_infinity(mu_real, root_real, synthetic, num_points=fd_inf_points, seed=seed)
        out.update(fd_inf=inf["fd_inf"], fd_inf_slope=inf["slope"], fd_inf_n_min=inf["n_min"])
    if kid:
        size = kid_subset_size or max(2, min(1000, min(len(real), len(synthetic)) // 2))
        k = kernel_inception_distance(
            real, synthetic, num_subsets=kid_subsets, subset_size=size, seed=seed
        )
        out.update(kid=k["kid"], kid_std=k["kid_std"], kid_subset_size=k["subset_size"])
    return out
