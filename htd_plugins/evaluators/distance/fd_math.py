"""Frechet distance mathematics in float64: streaming moments, trace-sqrt, the distance
(FD-infinity, KID and the sample-size warning are in :mod:`.estimators`).

The Frechet distance between Gaussians N(mu1, S1) and N(mu2, S2) is
``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``. ``S1 S2`` is not symmetric, but for
any factor ``S1 = F F^T`` it is similar to the symmetric positive semi-definite
``A = F^T S2 F``, so ``tr sqrt(S1 S2) = sum_i sqrt(lambda_i(A))``: a Cholesky factor ``L``
(or an eigendecomposition when S1 is singular), ``A = L^T (S2 L)`` as two triangular matrix
products (BLAS ``dtrmm``, half the work of general products) and the eigenvalues of A alone
(LAPACK ``dsyevd`` without eigenvectors, reading one triangle, with the blocked workspace
LAPACK asks for). No complex arithmetic, no matrix square root (scipy's ``sqrtm``). The
matrices stay in Fortran order from the Cholesky factor to the eigenvalues, so no step copies
or symmetrises a D x D matrix it does not need to (``benchmarks/bench_frechet.py`` times it
against pytorch-fid).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import blas, lapack

from htd_core.errors import InputError


class FrechetWarning(UserWarning):
    """A Frechet distance was computed but may be unreliable (few samples, non-PSD input)."""


class FrechetNumericalError(InputError, FloatingPointError):
    """The statistics are non-finite or far from positive semi-definite."""


class RunningMoments:
    """Mean and covariance of a stream of feature batches, merged exactly in float64.

    Batches merge with Chan et al.'s pairwise update (centred sums of outer products), which
    stays accurate when features have a large mean, unlike ``E[xx^T] - mu mu^T``.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None  # sum of centred outer products

    def update(self, features: np.ndarray | torch.Tensor) -> None:
        """Add a batch N x D (any float dtype; converted to float64)."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        if x.ndim != 2:
            raise InputError(f"features must be N x D, got shape {tuple(x.shape)}")
        if self.dim is None:
            self.dim = int(x.shape[1])
        if x.shape[1] != self.dim:
            raise InputError(
                f"feature width {x.shape[1]} differs from earlier batches ({self.dim})"
            )
        nb = int(x.shape[0])
        if nb == 0:
            return
        if not torch.isfinite(x).all():
            raise FrechetNumericalError("features contain NaN or inf: check the encoder's weights")
        mb = x.mean(0)
        xc = x - mb
        if self._mean is None or self._m2 is None:
            self.n, self._mean, self._m2 = nb, mb, xc.T @ xc
            return
        n = self.n + nb
        delta = mb - self._mean
        self._m2.addmm_(xc.T, xc).addr_(delta, delta, alpha=self.n * nb / n)  # in place
        self._mean += delta * (nb / n)
        self.n = n

    @property
    def mean(self) -> np.ndarray | None:
        return None if self._mean is None else self._mean.numpy().copy()

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean D, unbiased covariance D x D) in float64; needs at least two samples."""
        if self.n < 2 or self._mean is None or self._m2 is None:
            raise InputError(f"a covariance needs at least 2 samples, got {self.n}")
        return self._mean.numpy().copy(), (self._m2 / (self.n - 1)).numpy()


def statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of N x D features in float64."""
    moments = RunningMoments()
    moments.update(features)
    return moments.statistics()


@dataclass(frozen=True)
class SqrtCov:
    """A factor ``F`` of a covariance ``S = F F^T``, reusable against many other covariances.

    ``eig(S S2) = eig(F^T S2 F)``, and the right side is symmetric PSD, so any factor serves:
    the lower Cholesky factor when ``S`` is positive definite (fast: triangular products, no
    eigenvectors), else ``V diag(sqrt(w))`` from the eigendecomposition (rank-deficient
    ``S``, N <= D).
    """

    factor: np.ndarray  # D x D float64 (a torch tensor is accepted too)
    trace: float
    method: str  # "cholesky" or "eigh"


def sqrt_covariance(sigma: np.ndarray, *, tol: float = 1e-6) -> SqrtCov:
    """Factor ``F`` with ``F F^T = sigma``: Cholesky (LAPACK ``dpotrf`` on the lower
    triangle), or eigendecomposition when singular.

    Eigenvalues below zero by more than ``tol`` times the largest raise (not a covariance);
    smaller negative ones are rounding and are clipped to zero.
    """
    s = _as_matrix(sigma, "covariance")
    chol, info = lapack.dpotrf(s, lower=1, clean=1)
    if info == 0 and np.isfinite(chol).all():
        return SqrtCov(factor=chol, trace=float(np.trace(s)), method="cholesky")
    w, v = np.linalg.eigh((s + s.T) / 2)
    _check_psd(w, tol, "covariance")
    return SqrtCov(factor=v * np.sqrt(np.clip(w, 0, None)), trace=float(np.trace(s)), method="eigh")


def trace_sqrt_product(root1: SqrtCov, sigma2: np.ndarray, *, tol: float = 1e-6) -> float:
    """``tr sqrt(S1 S2)`` from a factor of S1: the eigenvalues of ``F^T S2 F``.

    ``sigma2`` is taken as symmetric (a covariance): its transpose, a Fortran-order view of
    the same memory, goes to BLAS without a copy.
    """
    s2 = _as_matrix(sigma2, "covariance").T  # Fortran order; equal to sigma2 when symmetric
    f = np.asarray(root1.factor, dtype=np.float64)
    if root1.method == "cholesky":  # A = L^T (S2 L): two triangular products
        b = blas.dtrmm(1.0, f, s2, side=1, lower=1)
        a = blas.dtrmm(1.0, f, b, side=0, lower=1, trans_a=1, overwrite_b=1)
    else:
        a = np.asfortranarray(f.T @ s2 @ f)
    # workspace from LAPACK's own query: scipy's default is the unblocked minimum, which makes
    # the tridiagonal reduction (the dominant cost) about 1.7x slower at D = 2048
    lwork, liwork, _ = lapack.dsyevd_lwork(a.shape[0], compute_v=0, lower=1)
    e, _, info = lapack.dsyevd(
        a, compute_v=0, lower=1, overwrite_a=1, lwork=int(lwork), liwork=int(liwork)
    )
    if info != 0:
        raise FrechetNumericalError(f"the eigenvalues of F^T S2 F did not converge (info={info})")
    _check_psd(e, tol, "F^T S2 F (similar to S1 S2)")
    return float(np.sqrt(np.clip(e, 0, None)).sum())


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray | SqrtCov,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    tol: float = 1e-6,
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``sigma1`` may be a precomputed :class:`SqrtCov` (the real set's, when scoring many
    synthetic sets or subsets against it).

    Raises:
        InputError: shapes differ.
        FrechetNumericalError: non-finite statistics, or a matrix that is clearly not PSD
            (non-PSD input is where ``sqrtm``-based code meets a "significant imaginary
            component"; here it shows as clearly negative eigenvalues).
    """
    mu1 = np.asarray(mu1, np.float64)
    mu2 = np.asarray(mu2, np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise InputError(f"means must be vectors of one length, got {mu1.shape} and {mu2.shape}")
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise FrechetNumericalError("a mean vector contains NaN or inf")
    root1 = sigma1 if isinstance(sigma1, SqrtCov) else sqrt_covariance(sigma1, tol=tol)
    if root1.factor.shape[0] != mu1.shape[0] or np.shape(sigma2) != (mu1.shape[0],) * 2:
        raise InputError(
            f"covariances {tuple(root1.factor.shape)} and {np.shape(sigma2)} do not match "
            f"means of length {mu1.shape[0]}"
        )
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(root1, sigma2, tol=tol)
    fd = float(diff @ diff) + root1.trace + float(np.trace(sigma2)) - 2.0 * tr_covmean
    if not np.isfinite(fd):
        raise FrechetNumericalError(f"Frechet distance is not finite ({fd})")
    return max(fd, 0.0)  # rounding can give -1e-12 for identical sets


def _as_matrix(matrix: np.ndarray, what: str) -> np.ndarray:
    """A square finite float64 matrix (no copy when it already is one)."""
    s = np.asarray(matrix, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise InputError(f"{what} must be a square matrix, got shape {tuple(s.shape)}")
    if not np.isfinite(s).all():
        raise FrechetNumericalError(f"{what} contains NaN or inf")
    return s


def _check_psd(eigenvalues: np.ndarray, tol: float, what: str) -> None:
    if not np.isfinite(eigenvalues).all():
        raise FrechetNumericalError(f"eigenvalues of {what} are not finite")
    top = float(np.abs(eigenvalues).max()) if eigenvalues.size else 0.0
    low = float(eigenvalues.min()) if eigenvalues.size else 0.0
    if low < -tol * max(top, 1e-300):
        raise FrechetNumericalError(
            f"{what} is not positive semi-definite (smallest eigenvalue {low:.3g}, largest "
            f"{top:.3g}): the statistics are not a covariance or are badly conditioned"
        )
    if low < -1e-10 * max(top, 1e-300):
        warnings.warn(
            f"{what} has small negative eigenvalues ({low:.3g}); clipped to zero",
            FrechetWarning,
            stacklevel=3,
        )
