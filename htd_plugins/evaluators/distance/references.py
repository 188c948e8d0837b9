"""Reference rows beside a synthetic set's FD: real vs real, and the autoencoder's ceiling.

An FD value means little alone (it depends on the encoder, on N and on the data): the report
shows, against the same held-out reference and under the same encoder,

- ``fd_real_train``: real training images vs the held-out images, with as many training
  images as the synthetic set has (a seeded subset; all of them when there are fewer), so
  the N bias is the same as the synthetic row's;
- ``fd_reconstruction``: the held-out images passed through the model's autoencoder vs the
  held-out images themselves (every generated image is decoded by that autoencoder, so no
  generated set is expected below it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from htd_core.interfaces import Encoder
from htd_plugins.evaluators.distance import fd_math
from htd_plugins.evaluators.distance.feature_cache import FeatureCache


@dataclass
class EncoderState:
    """What one encoder has accumulated since the last reset. ``test``: the held-out real
    samples; ``other``: features of the other real samples; ``recon``: reconstructions of
    the held-out samples (``test``) or, while none is marked, of every real one (``other``)."""

    encoder: Encoder
    cache: FeatureCache | None
    recon_cache: FeatureCache | None
    test: fd_math.RunningMoments = field(default_factory=fd_math.RunningMoments)
    test_features: list[np.ndarray] = field(default_factory=list)
    other: list[np.ndarray] = field(default_factory=list)
    recon: dict[str, fd_math.RunningMoments] = field(
        default_factory=lambda: {
            "test": fd_math.RunningMoments(),
            "other": fd_math.RunningMoments(),
        }
    )
    synthetic: fd_math.RunningMoments = field(default_factory=fd_math.RunningMoments)
    synthetic_features: list[np.ndarray] = field(default_factory=list)
    real_sizes: set[tuple[int, int]] = field(default_factory=set)
    synthetic_sizes: set[tuple[int, int]] = field(default_factory=set)


def reference_rows(
    mu_ref: np.ndarray,
    root_ref: fd_math.SqrtCov,
    train: np.ndarray | None,
    reconstructions: fd_math.RunningMoments,
    n_synthetic: int,
    seed: int,
    label: str,
    notes: list[str],
) -> dict[str, Any]:
    """``fd_real_train`` / ``n_real_train`` and ``fd_reconstruction`` / ``n_reconstruction``
    (those that can be computed) against the reference ``N(mu_ref, root_ref)``.

    Args:
        train: features N x D of the real training images (None: no held-out set, so no
            real-vs-real row; the report says so).
        reconstructions: moments of the reference images' reconstructions (empty: no model).
        n_synthetic: the synthetic set's N, which the training subset matches.
        seed: seed of the training subset.
        label: the encoder's label, for notes.
        notes: list the caveats are appended to.
    """
    out: dict[str, Any] = {}
    if train is not None and len(train) >= 2:
        m = min(n_synthetic, len(train))
        subset = np.sort(np.random.default_rng(seed).permutation(len(train))[:m])
        mu, sigma = fd_math.statistics(train[subset])
        out["fd_real_train"] = fd_math.frechet_distance(mu_ref, root_ref, mu, sigma)
        out["n_real_train"] = int(m)
        if m < n_synthetic:
            notes.append(
                f"{label}: real vs real uses all {m} training images, fewer than the "
                f"{n_synthetic} synthetic ones (FD is biased upwards at small N)"
            )
    if reconstructions.n >= 2:
        mu, sigma = reconstructions.statistics()
        out["fd_reconstruction"] = fd_math.frechet_distance(mu_ref, root_ref, mu, sigma)
        out["n_reconstruction"] = int(reconstructions.n)
    return out
