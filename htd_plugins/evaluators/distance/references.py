"""Reference rows beside a synthetic set's FD: real vs real, and the autoencoder's ceiling.

An FD value means little alone (it depends on the encoder, on N and on the data): the report
shows, against the same held-out reference and under the same encoder,

- ``fd_real_train``: real training images vs the held-out images, with as many training
  images as the synthetic set has (a seeded subset; all of them when there are fewer), so
  the N bias is the same as the synthetic row's;
- ``fd_reconstruction``: the same training images passed through the model's autoencoder vs
  the held-out images: the same N and, like the synthetic set, images that are not the
  reference's own (unpaired), so it reads as "what the autoencoder's round trip costs a set
  of real images"; every generated image is decoded by that autoencoder. Without a held-out
  set the reference is every real image and the row is their own reconstructions (paired).
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
    samples; ``other_rows`` / ``recon_rows``: features of the other real samples (the
    training images) embedded so far and of their reconstructions, by row
    (:class:`.training_rows.TrainingRows`); ``other`` / ``recon``: those of the rows the
    result uses, set at ``aggregate`` (N x D, row for row; ``recon`` empty without a model)."""

    encoder: Encoder
    cache: FeatureCache | None
    recon_cache: FeatureCache | None
    test: fd_math.RunningMoments = field(default_factory=fd_math.RunningMoments)
    test_features: list[np.ndarray] = field(default_factory=list)
    other: list[np.ndarray] = field(default_factory=list)
    recon: list[np.ndarray] = field(default_factory=list)
    other_rows: dict[int, np.ndarray] = field(default_factory=dict)
    recon_rows: dict[int, np.ndarray] = field(default_factory=dict)
    synthetic: fd_math.RunningMoments = field(default_factory=fd_math.RunningMoments)
    synthetic_features: list[np.ndarray] = field(default_factory=list)
    real_sizes: set[tuple[int, int]] = field(default_factory=set)
    synthetic_sizes: set[tuple[int, int]] = field(default_factory=set)


def reference_rows(
    mu_ref: np.ndarray,
    root_ref: fd_math.SqrtCov,
    train: np.ndarray,
    reconstructions: np.ndarray | None,
    held_out: bool,
    n_synthetic: int,
    label: str,
    notes: list[str],
) -> dict[str, Any]:
    """``fd_real_train`` / ``n_real_train`` and ``fd_reconstruction`` / ``n_reconstruction``
    (those that can be computed) against the reference ``N(mu_ref, root_ref)``.

    Args:
        train: features N x D of the real images that are not the reference: with a held-out
            reference the :func:`.training_rows.training_subset` of the training images (only
            those are embedded), else every real image.
        reconstructions: features of ``train``'s reconstructions, row for row (None: no
            model).
        held_out: the reference is a held-out set (else it is ``train`` itself: no
            real-vs-real row, and the reconstruction row is paired).
        n_synthetic: the synthetic set's N, which the training subset matches.
        label: the encoder's label, for notes.
        notes: list the caveats are appended to.
    """
    out: dict[str, Any] = {}
    if held_out and len(train) >= 2:
        m = len(train)
        mu, sigma = fd_math.statistics(train)
        out["fd_real_train"] = fd_math.frechet_distance(mu_ref, root_ref, mu, sigma)
        out["n_real_train"] = int(m)
        if m < n_synthetic:
            notes.append(
                f"{label}: real vs real uses all {m} training images, fewer than the "
                f"{n_synthetic} synthetic ones (FD is biased upwards at small N)"
            )
        if reconstructions is not None and len(reconstructions) == len(train):
            mu, sigma = fd_math.statistics(reconstructions)
            out["fd_reconstruction"] = fd_math.frechet_distance(mu_ref, root_ref, mu, sigma)
            out["n_reconstruction"] = int(m)
    elif reconstructions is not None and len(reconstructions) >= 2:
        mu, sigma = fd_math.statistics(reconstructions)
        out["fd_reconstruction"] = fd_math.frechet_distance(mu_ref, root_ref, mu, sigma)
        out["n_reconstruction"] = int(len(reconstructions))
    return out
