"""Conformance mixins: the checks every implementation of an interface must pass.

Use in a test module::

    class TestMyBuilder(ConditionBuilderConformance):
        def make_builder(self):
            return MyBuilder()
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.generation import GenerationOptions
from htd_core.interfaces import Backbone, ConditionBuilder, Encoder, Evaluator, PatchSampler
from htd_core.testing.samples import synthetic_sample
from htd_core.types import ClassMap, Condition, TissueSample


class ConditionBuilderConformance:
    """Override ``make_builder``; optionally ``make_samples`` (default: synthetic) and
    ``needs_image`` (True when the builder refuses layouts without an image)."""

    needs_image = False

    def make_builder(self) -> ConditionBuilder:
        raise NotImplementedError

    def make_samples(self) -> list[TissueSample]:
        return [synthetic_sample(64, seed=s) for s in range(2)]

    def test_is_condition_builder(self) -> None:
        assert isinstance(self.make_builder(), ConditionBuilder)

    def test_channels_match_build(self) -> None:
        builder = self.make_builder()
        for sample in self.make_samples():
            cond = builder.build(sample, seed=0)
            assert cond.channels == builder.channels(sample.class_map)
            assert cond.token_names == builder.token_names(sample.class_map)
            if cond.spatial is not None:
                assert cond.spatial.dtype == torch.float32
                assert tuple(cond.spatial.shape[1:]) == sample.size
                assert torch.isfinite(cond.spatial).all()
            if cond.tokens is not None:
                assert cond.tokens.shape[1] == builder.token_dim
                assert torch.isfinite(cond.tokens).all()

    def test_deterministic_for_seed(self) -> None:
        sample = self.make_samples()[0]
        a = self.make_builder().build(sample, seed=7)
        b = self.make_builder().build(sample, seed=7)
        for x, y in ((a.spatial, b.spatial), (a.tokens, b.tokens)):
            assert (x is None) == (y is None)
            if x is not None:
                assert torch.equal(x, y)

    def test_composes(self) -> None:
        builder = self.make_builder()
        sample = self.make_samples()[0]
        both = (builder + builder).build(sample, seed=0)
        assert both.channels == builder.channels(sample.class_map) * 2

    def test_layout_without_image(self) -> None:
        sample = self.make_samples()[0]
        layout = TissueSample(None, sample.mask, sample.class_map, sample.meta)
        if self.needs_image:
            with pytest.raises(InputError):
                self.make_builder().build(layout, seed=0)
        else:
            cond = self.make_builder().build(layout, seed=0)
            assert cond.channels == self.make_builder().channels(sample.class_map)

    def test_refuses_unknown_class_in_mask(self) -> None:
        sample = self.make_samples()[0]
        mask = sample.mask.copy()
        mask[1, 1] = len(sample.class_map) + 3
        bad = TissueSample(sample.image, mask, sample.class_map, sample.meta)
        builder = self.make_builder()
        if not builder.channels(sample.class_map) and not builder.token_names(sample.class_map):
            assert builder.build(bad, seed=0).is_null  # mask unused: nothing to refuse
            return
        with pytest.raises(InputError, match="class"):
            self.make_builder().build(bad, seed=0)


class PatchSamplerConformance:
    """Override ``make_sampler`` (it should yield at least ``min_samples`` samples)."""

    min_samples = 1

    def make_sampler(self) -> PatchSampler:
        raise NotImplementedError

    def test_yields_valid_samples(self) -> None:
        sampler = self.make_sampler()
        samples = sampler.take(4)
        assert len(samples) >= self.min_samples
        for s in samples:
            assert isinstance(s, TissueSample) and s.image is not None
            assert s.class_map == sampler.class_map
            s.class_map.check_mask(s.mask)
            json.dumps(s.meta)  # provenance must be serialisable
            assert not {"label", "macro"} & {k.lower() for k in s.meta}

    def test_deterministic(self) -> None:
        a, b = self.make_sampler().take(3), self.make_sampler().take(3)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)


class EncoderConformance:
    """Override ``make_encoder`` (small random weights are fine for the checks)."""

    def make_encoder(self) -> Encoder:
        raise NotImplementedError

    def test_declares_preprocessing(self) -> None:
        enc = self.make_encoder()
        assert isinstance(enc, Encoder)
        assert enc.embed_dim > 0 and enc.input_size > 0
        assert len(enc.mean) == 3 and len(enc.std) == 3
        assert enc.weights_id

    def test_features_shape_and_batching(self) -> None:
        enc = self.make_encoder()
        images = np.random.default_rng(0).integers(0, 256, (3, 40, 52, 3), dtype=np.uint8)
        whole = enc(images, batch_size=3)
        parts = enc(images, batch_size=2)
        assert whole.shape == (3, enc.embed_dim) and whole.dtype == torch.float32
        assert torch.allclose(whole, parts, atol=1e-4, rtol=1e-4)
        assert enc(images[:0]).shape == (0, enc.embed_dim)

    def test_rejects_non_uint8(self) -> None:
        with pytest.raises(InputError):
            self.make_encoder()(np.zeros((1, 8, 8, 3), np.float32))

    def test_random_weights_are_labelled(self) -> None:
        enc = self.make_encoder()
        assert ("RANDOM" in enc.label) == enc.is_random


class EvaluatorConformance:
    """Override ``make_evaluator`` and ``make_sets`` -> (real, synthetic).

    Besides the metric lifecycle, checks what ``htd evaluate`` uses: ``run_options`` returns
    keywords the constructor takes, ``report_section`` renders the metrics the evaluator
    produced (as Markdown whose local links exist), ``nearest_real`` indexes the real set.
    """

    def make_evaluator(self) -> Evaluator:
        raise NotImplementedError

    def make_sets(self) -> tuple[list[TissueSample], list[TissueSample]]:
        real = [synthetic_sample(32, seed=s) for s in range(6)]
        return real, [synthetic_sample(32, seed=100 + s) for s in range(6)]

    def test_aggregate_is_json(self) -> None:
        real, synthetic = self.make_sets()
        metrics = self.make_evaluator().evaluate(real, synthetic)
        assert isinstance(metrics, dict) and metrics
        json.dumps(metrics)

    def test_reset_forgets(self) -> None:
        real, synthetic = self.make_sets()
        ev = self.make_evaluator()
        first = ev.evaluate(real, synthetic)
        ev.reset()
        ev.update(real=real, synthetic=synthetic)
        assert _close(ev.aggregate(), first)

    def test_streaming_matches_one_batch(self) -> None:
        real, synthetic = self.make_sets()
        ev = self.make_evaluator()
        whole = ev.evaluate(real, synthetic)
        ev.reset()
        half = len(real) // 2
        ev.update(real=real[:half], synthetic=synthetic[:half])
        ev.update(real=real[half:], synthetic=synthetic[half:])
        assert _close(ev.aggregate(), whole)

    def test_run_options_are_constructor_keywords(self, tmp_path) -> None:
        from htd_core.interfaces.evaluator import RunSettings
        from htd_core.registry import accepted_options

        cls = type(self.make_evaluator())
        run = RunSettings(
            device="cpu", encoders=("enc_a", "enc_b"), weights={"enc_a": "a.safetensors"},
            cache_dir=tmp_path / "cache", output_dir=tmp_path / "figures" / "set",
        )  # fmt: skip
        for user in ({}, {"encoder": "enc_b", "encoders": ["enc_b"]}):
            offered = cls.run_options(run, user)
            assert isinstance(offered, dict) and all(isinstance(k, str) for k in offered)
            allowed = accepted_options(cls)
            if allowed is not None:
                assert set(offered) <= set(allowed), f"not constructor keywords: {offered}"
        assert isinstance(cls.run_by_default, bool)

    def test_report_section_renders_its_metrics(self, tmp_path) -> None:
        import re

        from htd_core.interfaces.evaluator import ReportContext

        real, synthetic = self.make_sets()
        ev = self.make_evaluator()
        metrics = json.loads(json.dumps(ev.evaluate(real, synthetic)))  # as saved and reloaded
        figures = tmp_path / "figures"
        figures.mkdir()
        context = ReportContext(name="under_test", report_dir=tmp_path, figure_dir=figures)
        text = type(ev).report_section({"set_a": metrics, "set_b": metrics}, context)
        assert isinstance(text, str) and text.strip()
        assert "set_a" in text and "set_b" in text, "the section must name the sets it reports"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" not in target:
                assert (tmp_path / target).is_file(), f"the section links a missing {target}"

    def test_nearest_real_indexes_the_real_set(self) -> None:
        real, synthetic = self.make_sets()
        ev = self.make_evaluator()
        nearest = type(ev).nearest_real(json.loads(json.dumps(ev.evaluate(real, synthetic))))
        if nearest is not None:
            assert len(nearest) == len(synthetic)
            assert all(isinstance(i, int) and -1 <= i < len(real) for i in nearest)


class BackboneConformance:
    """Override ``make_backbone``, ``make_builder`` and ``make_samples`` (tiny preset);
    ``generation`` is the :class:`~htd_core.generation.GenerationOptions` the checks sample
    with (few steps; each check replaces its seed)."""

    fit_options: dict[str, Any] = {}
    generation = GenerationOptions(num_inference_steps=2)

    def make_backbone(self) -> Backbone:
        raise NotImplementedError

    def make_builder(self) -> ConditionBuilder:
        raise NotImplementedError

    def make_samples(self) -> list[TissueSample]:
        return [synthetic_sample(32, seed=s) for s in range(4)]

    def test_fit_generate_save_load(self, tmp_path) -> None:
        backbone, builder, samples = self.make_backbone(), self.make_builder(), self.make_samples()
        backbone.fit(samples, builder, **self.fit_options)
        conds = [builder.build(s, seed=0) for s in samples[:2]]
        seeded = self.generation.replace(seed=3)
        images = backbone.generate(conds, seeded)
        assert images.dtype == np.uint8 and images.shape == (2, *samples[0].size, 3)
        assert np.array_equal(images, backbone.generate(conds, seeded))  # deterministic per seed
        null = backbone.generate([Condition()], self.generation.replace(seed=0))  # unconditional
        assert null.dtype == np.uint8 and null.ndim == 4 and null.shape[0] == 1
        extra = len(conds[0].channels) + 1  # a condition the model was not trained on
        wrong = Condition(
            torch.zeros(extra, *samples[0].size), channels=[f"x{i}" for i in range(extra)]
        )
        with pytest.raises(InputError):
            backbone.generate([wrong], self.generation.replace(seed=0))
        backbone.save(tmp_path / "model")
        again = type(backbone).load(tmp_path / "model").generate(conds, seeded)
        assert np.abs(images.astype(int) - again.astype(int)).max() <= 1


def _close(a: Any, b: Any, tol: float = 1e-6) -> bool:
    """Deep equality of metric dicts with a relative tolerance on floats."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(a, b, rtol=tol * 1e3, atol=tol, equal_nan=True))
    return a == b


__all__ = [
    "BackboneConformance",
    "ClassMap",
    "ConditionBuilderConformance",
    "EncoderConformance",
    "EvaluatorConformance",
    "PatchSamplerConformance",
]
