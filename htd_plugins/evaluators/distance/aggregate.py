"""One encoder's ``frechet`` result from what :class:`.references.EncoderState` accumulated:
FD, the reference rows, FD-infinity, KID and their bootstrap intervals.

Bootstrap (``bootstrap=B``): both the reference (held-out) features and the synthetic ones
are resampled with replacement under :mod:`htd_core.bootstrap`'s seeding contract, and FD and
KID are recomputed from the resampled features:

- FD of a resample uses ``tr sqrt(S_r S_s) = ||B A^T||_*`` (the nuclear norm), where
  ``S_r = A^T A`` and ``S_s = B^T B`` with ``A``, ``B`` the centred features scaled by
  ``1 / sqrt(n - 1)``: the non-zero eigenvalues of ``S_r S_s`` are those of
  ``(B A^T)(B A^T)^T``. That is an ``n_s x n_r`` SVD instead of a ``D x D`` eigenproblem, and
  exact; when the sets are larger than the features are wide, the ``D x D`` route is used.
- KID of a resample is the unbiased MMD^2 of the kernel matrices of the full sets, weighted by
  how often each image is drawn, with the pairs of an image with itself left out (so the
  duplicates a resample holds add no bias); the point value ``kid`` stays the subset
  average of :func:`.estimators.kernel_inception_distance`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from htd_core import bootstrap as boot
from htd_core.errors import InputError
from htd_plugins.evaluators.distance import estimators, fd_math
from htd_plugins.evaluators.distance.references import EncoderState, reference_rows
from htd_plugins.evaluators.sizes import size_note

#: Larger sets get no KID interval (three n x n float64 kernel matrices).
KID_BOOTSTRAP_MAX = 5000


class Settings(Protocol):
    """What :func:`encoder_metrics` reads of the ``frechet`` evaluator (its options)."""

    seed: int
    fd_inf: bool
    kid: bool
    fd_inf_points: int
    kid_subsets: int
    kid_subset_size: int | None
    bootstrap: int


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def encoder_metrics(ev: Settings, st: EncoderState, notes: list[str]) -> dict[str, Any]:
    """The result of one encoder (keys as documented in :mod:`htd_plugins.evaluators.frechet`).

    Raises:
        InputError: fewer than 2 reference or synthetic images.
    """
    enc = st.encoder
    other = _stack(st.other, enc.embed_dim)
    held_out = st.test.n > 0
    n_ref, n_syn = (st.test.n if held_out else len(other)), st.synthetic.n
    if n_ref < 2 or n_syn < 2:
        what = "held-out real" if held_out else "real"
        raise InputError(
            f"frechet: got {n_ref} {what} and {n_syn} synthetic images; FD needs at least "
            "2 of each (an empty set? check the folder and any --limit)"
        )
    mu_r, sigma_r = st.test.statistics() if held_out else fd_math.statistics(other)
    mu_s, sigma_s = st.synthetic.statistics()
    root_r = fd_math.sqrt_covariance(sigma_r)
    result: dict[str, Any] = {
        "label": enc.label, "weights_id": enc.weights_id, "random_weights": enc.is_random,
        "dim": int(enc.embed_dim), "input_size": int(enc.input_size),
        "reference": "held-out real" if held_out else "all real",
        "n_real": int(n_ref), "n_synthetic": int(n_syn),
        "fd": fd_math.frechet_distance(mu_r, root_r, mu_s, sigma_s),
    }  # fmt: skip
    recon = np.concatenate(st.recon) if st.recon else None
    result.update(reference_rows(mu_r, root_r, other, recon, held_out, n_syn, enc.label,
                                 notes))  # fmt: skip
    for n, what in ((n_ref, "reference"), (n_syn, "synthetic")):
        msg = estimators.sample_size_warning(
            n, enc.embed_dim, f"{enc.label} {what} set", fd_inf_computed=ev.fd_inf
        )
        if msg:
            notes.append(msg)
    note = size_note(st.real_sizes, st.synthetic_sizes, enc.input_size, enc.label)
    if note:
        notes.append(note)
    syn = np.concatenate(st.synthetic_features) if st.synthetic_features else None
    if syn is None:
        return result
    real = _stack(st.test_features, enc.embed_dim) if held_out else other
    result.update(estimators.optional_estimates(
        mu_r, root_r, real, syn, fd_inf=ev.fd_inf, kid=ev.kid,
        fd_inf_points=ev.fd_inf_points, kid_subsets=ev.kid_subsets,
        kid_subset_size=ev.kid_subset_size, seed=ev.seed,
    ))  # fmt: skip
    if ev.bootstrap:
        result.update(bootstrap_rows(real, syn, ev.seed, ev.bootstrap, result, kid=ev.kid,
                                     label=enc.label, notes=notes))  # fmt: skip
    return result


def bootstrap_fd(real: np.ndarray, synthetic: np.ndarray, seed: int, b: int) -> np.ndarray:
    """FD of ``b`` resamples of both sets (module docstring): float64 ``(b,)``."""
    r = np.asarray(real, np.float64)
    s = np.asarray(synthetic, np.float64)
    ir = boot.resample_indices(seed, len(r), b, stream=0)
    is_ = boot.resample_indices(seed, len(s), b, stream=1)
    small = len(r) * len(s) <= r.shape[1] ** 2
    out = np.empty(int(b))
    for k in range(int(b)):
        x, y = r[ir[k]], s[is_[k]]
        if not small:
            (mx, sx), (my, sy) = fd_math.statistics(x), fd_math.statistics(y)
            out[k] = fd_math.frechet_distance(mx, sx, my, sy)
            continue
        mx, my = x.mean(0), y.mean(0)
        a = (x - mx) / np.sqrt(len(x) - 1)
        c = (y - my) / np.sqrt(len(y) - 1)
        nuclear = np.linalg.svd(c @ a.T, compute_uv=False).sum()
        d = mx - my
        out[k] = max(float(d @ d + (a * a).sum() + (c * c).sum() - 2.0 * nuclear), 0.0)
    return out


def bootstrap_kid(real: np.ndarray, synthetic: np.ndarray, seed: int, b: int) -> np.ndarray:
    """KID of ``b`` resamples of both sets, self-pairs left out (module docstring)."""
    x = np.asarray(real, np.float64)
    y = np.asarray(synthetic, np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    cx = boot.resample_counts(seed, len(x), b, stream=0).astype(np.float64)
    cy = boot.resample_counts(seed, len(y), b, stream=1).astype(np.float64)

    def within(k: np.ndarray, c: np.ndarray) -> np.ndarray:
        pairs = np.einsum("bi,ij,bj->b", c, k, c) - (c * c) @ np.diag(k)
        return pairs / (c.sum(1) ** 2 - (c * c).sum(1))

    across = np.einsum("bi,ij,bj->b", cx, kxy, cy) / (cx.sum(1) * cy.sum(1))
    return within(kxx, cx) + within(kyy, cy) - 2.0 * across


def bootstrap_rows(
    real: np.ndarray,
    synthetic: np.ndarray,
    seed: int,
    b: int,
    point: dict[str, Any],
    *,
    kid: bool,
    label: str,
    notes: list[str],
) -> dict[str, Any]:
    """``fd_bootstrap`` / ``fd_ci`` and (with ``kid``) ``kid_bootstrap`` / ``kid_ci``; the FD
    interval is shifted by the bootstrap's bias (:func:`htd_core.bootstrap.interval`)."""
    fd = bootstrap_fd(real, synthetic, seed, b)
    out: dict[str, Any] = {
        "bootstrap": int(b),
        "fd_bootstrap": [float(v) for v in fd],
        "fd_ci": boot.interval(fd, center=point["fd"]),
    }
    if kid:
        if max(len(real), len(synthetic)) > KID_BOOTSTRAP_MAX:
            notes.append(f"{label}: no KID interval above {KID_BOOTSTRAP_MAX} images per set")
        else:
            values = bootstrap_kid(real, synthetic, seed, b)
            out["kid_bootstrap"] = [float(v) for v in values]
            out["kid_ci"] = boot.interval(values)
    return out
