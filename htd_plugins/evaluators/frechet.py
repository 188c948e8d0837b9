"""``frechet``: Frechet distance between real and synthetic sets under several encoders.

The paper reports FD under eight encoders (Inception, UNI, DINOv2...): every registered
encoder can be named here, each scored in one pass over the data. Statistics are accumulated
in float64 from streamed batches; the real set's features can be cached to a folder keyed by
encoder, weights hash and preprocessing (see :mod:`.feature_cache`). Optional FD-infinity
(bias-corrected) and KID.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from htd_core import Evaluator, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_core.interfaces.evaluator import ReportContext, RunSettings
from htd_plugins.evaluators.distance import fd_math
from htd_plugins.evaluators.distance.encoding import (
    EncoderSpec,
    build_encoder,
    embed_images,
    encoder_spec_name,
    sample_images,
    size_note,
)
from htd_plugins.evaluators.distance.feature_cache import FeatureCache, image_key

#: The encoders used when neither ``encoders`` nor ``htd evaluate --encoders`` names any.
DEFAULT_ENCODERS = ("inception_fid",)


@dataclass
class _EncoderState:
    """What one encoder has accumulated since the last reset."""

    encoder: Encoder
    cache: FeatureCache | None
    real: fd_math.RunningMoments = field(default_factory=fd_math.RunningMoments)
    synthetic: fd_math.RunningMoments = field(default_factory=fd_math.RunningMoments)
    real_features: list[np.ndarray] = field(default_factory=list)
    synthetic_features: list[np.ndarray] = field(default_factory=list)
    real_sizes: set[tuple[int, int]] = field(default_factory=set)
    synthetic_sizes: set[tuple[int, int]] = field(default_factory=set)


class FrechetEvaluator(Evaluator):
    """FD (and optionally FD-infinity and KID) of synthetic vs real images per encoder.

    Args:
        encoders: registered encoder names, ``{"name": ..., **options}`` mappings or Encoder
            instances; several give one FD each (default: the standard FID Inception).
        weights: encoder name -> local weights file (or ``"random"``), for encoders that need one.
        device: where the encoders run.
        batch_size: images per encoder forward pass.
        cache_dir: folder for the real-set feature cache (None: no cache).
        fd_inf: also report bias-corrected FD-infinity (keeps synthetic features in memory).
        kid: also report the Kernel Inception Distance (keeps both sets' features in memory).
        fd_inf_points: number of subset sizes fitted for FD-infinity.
        kid_subsets: random subsets averaged for KID.
        kid_subset_size: samples per KID subset (capped at the smaller set's size).
        seed: seed of the FD-infinity and KID subsets.

    ``htd evaluate`` runs it when no ``--evaluators`` are named, with ``--encoders`` (default
    :data:`DEFAULT_ENCODERS`), their ``--weights``, ``--device`` and ``--cache-dir``.
    """

    name = "frechet"
    run_by_default: ClassVar[bool] = True
    default_encoders: ClassVar[tuple[str, ...]] = DEFAULT_ENCODERS

    def __init__(
        self,
        encoders: Sequence[EncoderSpec] | EncoderSpec = DEFAULT_ENCODERS,
        weights: Mapping[str, str] | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        fd_inf: bool = False,
        kid: bool = False,
        fd_inf_points: int = 15,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        seed: int = 0,
    ) -> None:
        specs = [encoders] if isinstance(encoders, str | Mapping | Encoder) else list(encoders)
        if not specs:
            raise InputError(
                "frechet: encoders is empty; name at least one, e.g. ['inception_fid']"
            )
        self.encoder_specs = specs
        self.keys = _unique_keys([encoder_spec_name(s) for s in specs])
        self.weights = dict(weights or {})
        unknown = sorted(set(self.weights) - set(self.keys))
        if unknown:
            raise InputError(
                f"frechet: weights given for {unknown}, which are not among encoders {self.keys}"
            )
        for opt, value, low in (
            ("batch_size", batch_size, 1),
            ("fd_inf_points", fd_inf_points, 3),
            ("kid_subsets", kid_subsets, 1),
            ("kid_subset_size", kid_subset_size, 2),
        ):
            if int(value) < low:
                raise InputError(f"frechet: {opt}={value}; use an integer >= {low}")
        self.device = device
        self.batch_size = int(batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.fd_inf, self.kid = bool(fd_inf), bool(kid)
        self.fd_inf_points, self.kid_subsets = int(fd_inf_points), int(kid_subsets)
        self.kid_subset_size, self.seed = int(kid_subset_size), int(seed)
        self._encoders: dict[str, Encoder] = {}
        self._caches: dict[str, FeatureCache] = {}
        self.reset()

    # -- lifecycle ----------------------------------------------------------------------
    def reset(self) -> None:
        self._states: dict[str, _EncoderState] = {}

    def _state(self, key: str, spec: EncoderSpec) -> _EncoderState:
        if key not in self._states:
            if key not in self._encoders:
                self._encoders[key] = build_encoder(
                    spec, weights=self.weights.get(key), device=self.device
                )
                if self.cache_dir is not None:
                    self._caches[key] = FeatureCache(self.cache_dir, self._encoders[key])
            self._states[key] = _EncoderState(self._encoders[key], self._caches.get(key))
        return self._states[key]

    def update(
        self,
        *,
        real: Sequence[TissueSample] | None = None,
        synthetic: Sequence[TissueSample] | None = None,
    ) -> None:
        real_images = sample_images(real, "real")
        synthetic_images = sample_images(synthetic, "synthetic")
        real_keys = [image_key(im) for im in real_images] if self.cache_dir is not None else []
        for key, spec in zip(self.keys, self.encoder_specs, strict=True):
            st = self._state(key, spec)
            if real_images:
                feats = self._real_features(st, real_images, real_keys)
                st.real.update(feats)
                st.real_sizes |= {im.shape[:2] for im in real_images}
                if self.kid:
                    st.real_features.append(feats)
            if synthetic_images:
                feats = embed_images(st.encoder, synthetic_images, self.batch_size)
                st.synthetic.update(feats)
                st.synthetic_sizes |= {im.shape[:2] for im in synthetic_images}
                if self.kid or self.fd_inf:
                    st.synthetic_features.append(feats)

    def _real_features(
        self, st: _EncoderState, images: list[np.ndarray], keys: list[str]
    ) -> np.ndarray:
        """Real features, from the cache where present; new rows are added to it."""
        cache = st.cache
        if cache is None or not cache.enabled:
            return embed_images(st.encoder, images, self.batch_size)
        feats = np.zeros((len(images), st.encoder.embed_dim), np.float32)
        missing = []
        for i, k in enumerate(keys):
            row = cache.get(k)
            if row is None:
                missing.append(i)
            else:
                feats[i] = row
        if missing:
            feats[missing] = embed_images(st.encoder, [images[i] for i in missing], self.batch_size)
            for i in missing:
                cache.put(keys[i], feats[i])
            cache.checkpoint()
        return feats

    def aggregate(self) -> dict[str, Any]:
        notes: list[str] = []
        per_encoder: dict[str, dict[str, Any]] = {}
        for key in self.keys:
            st = self._states.get(key)
            n_real = st.real.n if st else 0
            n_syn = st.synthetic.n if st else 0
            if n_real < 2 or n_syn < 2:
                raise InputError(
                    f"frechet: got {n_real} real and {n_syn} synthetic images; FD needs at least "
                    "2 of each (an empty set? check the folder and any --limit)"
                )
            if st.cache is not None:
                st.cache.save()
            enc = st.encoder
            mu_r, sigma_r = st.real.statistics()
            mu_s, sigma_s = st.synthetic.statistics()
            root_r = fd_math.sqrt_covariance(sigma_r)
            result: dict[str, Any] = {
                "label": enc.label,
                "weights_id": enc.weights_id,
                "random_weights": enc.is_random,
                "dim": int(enc.embed_dim),
                "input_size": int(enc.input_size),
                "n_real": int(n_real),
                "n_synthetic": int(n_syn),
                "fd": fd_math.frechet_distance(mu_r, root_r, mu_s, sigma_s),
            }
            for n, what in ((n_real, "real"), (n_syn, "synthetic")):
                msg = fd_math.sample_size_warning(n, enc.embed_dim, f"{enc.label} {what} set")
                if msg:
                    notes.append(msg)
            note = size_note(st.real_sizes, st.synthetic_sizes, enc.input_size, enc.label)
            if note:
                notes.append(note)
            syn = np.concatenate(st.synthetic_features) if st.synthetic_features else None
            if self.fd_inf and syn is not None:
                inf = fd_math.fd_infinity(
                    mu_r, root_r, syn, num_points=self.fd_inf_points, seed=self.seed
                )
                result.update(
                    fd_inf=inf["fd_inf"], fd_inf_slope=inf["slope"], fd_inf_n_min=inf["n_min"]
                )
            if self.kid and syn is not None:
                kid = fd_math.kernel_inception_distance(
                    np.concatenate(st.real_features), syn, num_subsets=self.kid_subsets,
                    subset_size=self.kid_subset_size, seed=self.seed,
                )  # fmt: skip
                result.update(
                    kid=kid["kid"], kid_std=kid["kid_std"], kid_subset_size=kid["subset_size"]
                )
            per_encoder[key] = result
        for msg in dict.fromkeys(notes):
            warnings.warn(msg, fd_math.FrechetWarning, stacklevel=2)
        return {"encoders": per_encoder, "warnings": list(dict.fromkeys(notes))}

    # -- declared to htd evaluate and its report ------------------------------------------
    @classmethod
    def run_options(cls, run: RunSettings, options: Mapping[str, Any]) -> dict[str, Any]:
        """``device`` and ``cache_dir``; ``--encoders`` as ``encoders``, and the ``--weights``
        of the encoders used (the user's own, else those, else :attr:`default_encoders`)."""
        offered = super().run_options(run, options)
        if run.encoders:
            offered["encoders"] = list(run.encoders)
        listed = options.get("encoders", offered.get("encoders", cls.default_encoders))
        specs = [listed] if isinstance(listed, str | Mapping | Encoder) else list(listed)
        names = {encoder_spec_name(s) for s in specs}
        mine = {k: v for k, v in run.weights.items() if k in names}
        if mine:
            offered["weights"] = mine
        return offered

    @classmethod
    def report_section(
        cls, results: Mapping[str, Mapping[str, Any]], context: ReportContext
    ) -> str:
        from htd_plugins.evaluators.distance.section import frechet_section

        return frechet_section(results, context)


def _unique_keys(names: list[str]) -> list[str]:
    """Encoder names, suffixed ``#2``, ``#3`` when one is listed more than once."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("frechet", FrechetEvaluator)
