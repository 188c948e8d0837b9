"""Frechet mathematics against direct scipy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from htd_plugins.evaluators.distance import estimators, fd_math


def _scipy_fd(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm, straight from the features."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _sets(d: int = 6, n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d))
    x = rng.standard_normal((n, d)) @ mix
    y = (rng.standard_normal((n, d)) * 1.5 + 0.7) @ mix
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_on_small_matrices(seed: int) -> None:
    x, y = _sets(seed=seed)
    mu1, s1 = fd_math.statistics(x)
    mu2, s2 = fd_math.statistics(y)
    ours = fd_math.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_scipy_fd(x, y), rel=1e-9)
    assert ours > 1.0


def test_zero_for_identical_sets_and_symmetric() -> None:
    x, y = _sets()
    mu, s = fd_math.statistics(x)
    assert fd_math.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    mu2, s2 = fd_math.statistics(y)
    assert fd_math.frechet_distance(mu, s, mu2, s2) == pytest.approx(
        fd_math.frechet_distance(mu2, s2, mu, s), rel=1e-10
    )


def test_rank_deficient_covariances_still_match_scipy() -> None:
    # N < d: both covariances singular; scipy's sqrtm still defines the value.
    x, y = _sets(d=10, n=7)
    mu1, s1 = fd_math.statistics(x)
    mu2, s2 = fd_math.statistics(y)
    assert fd_math.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_fd(x, y), rel=1e-5)
    assert estimators.sample_size_warning(7, 10, "set") is not None
    assert estimators.sample_size_warning(70, 10, "set") is None


def test_cholesky_and_eigen_factors_agree() -> None:
    x, y = _sets(d=8, n=100)
    mu1, s1 = fd_math.statistics(x)
    mu2, s2 = fd_math.statistics(y)
    chol = fd_math.sqrt_covariance(s1)
    assert chol.method == "cholesky"
    w, v = np.linalg.eigh(s1)
    eig = fd_math.SqrtCov(
        factor=torch.from_numpy(v * np.sqrt(w)), trace=float(np.trace(s1)), method="eigh"
    )
    assert fd_math.frechet_distance(mu1, chol, mu2, s2) == pytest.approx(
        fd_math.frechet_distance(mu1, eig, mu2, s2), rel=1e-10
    )
    singular = fd_math.statistics(x[:5])[1]
    assert fd_math.sqrt_covariance(singular).method == "eigh"


def test_streaming_moments_equal_numpy_even_with_large_mean() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((301, 5)) + 1e6  # E[xx^T] - mu mu^T would lose all digits here
    moments = fd_math.RunningMoments()
    for chunk in np.array_split(x, [1, 40, 41, 200]):
        moments.update(chunk)
    mu, cov = moments.statistics()
    assert np.allclose(mu, x.mean(0), rtol=1e-13, atol=0)
    assert np.allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_bad_statistics_are_refused() -> None:
    mu = np.zeros(3)
    eye = np.eye(3)
    with pytest.raises(fd_math.FrechetNumericalError, match="NaN"):
        fd_math.frechet_distance(mu, np.full((3, 3), np.nan), mu, eye)
    with pytest.raises(fd_math.FrechetNumericalError, match="positive semi-definite"):
        fd_math.frechet_distance(mu, -eye, mu, eye)
    with pytest.raises(fd_math.InputError, match="do not match"):
        fd_math.frechet_distance(mu, eye, mu, np.eye(4))
    with pytest.raises(fd_math.InputError, match="2 samples"):
        fd_math.RunningMoments().statistics()
    moments = fd_math.RunningMoments()
    moments.update(np.zeros((2, 3)))
    with pytest.raises(fd_math.InputError, match="width"):
        moments.update(np.zeros((2, 4)))


def test_fd_infinity_removes_the_small_sample_bias() -> None:
    rng = np.random.default_rng(0)
    d = 16
    real = rng.standard_normal((20000, d))
    synthetic = rng.standard_normal((300, d))  # same distribution: the true FD is 0
    mu_r, s_r = fd_math.statistics(real)
    mu_s, s_s = fd_math.statistics(synthetic)
    fd = fd_math.frechet_distance(mu_r, s_r, mu_s, s_s)
    inf = estimators.fd_infinity(mu_r, fd_math.sqrt_covariance(s_r), synthetic, num_points=10)
    assert fd > 0.2  # the O(d^2 / N) bias
    assert abs(inf["fd_inf"]) < fd / 3
    assert inf["slope"] > 0 and inf["points"] == 10


def test_kid_near_zero_for_one_distribution_and_positive_otherwise() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 8)), rng.standard_normal((200, 8))
    c = rng.standard_normal((200, 8)) + 1.0
    same = estimators.kernel_inception_distance(a, b, num_subsets=20, subset_size=100)
    other = estimators.kernel_inception_distance(a, c, num_subsets=20, subset_size=100)
    assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
    assert other["kid"] > 10 * abs(same["kid"])
