"""Shared fixtures of the backbone tests: one CPU thread, tiny samples, a tiny trained model."""

from __future__ import annotations

import pytest

from htd_core.generation import GenerationOptions
from htd_core.testing import synthetic_sample

#: Training options that keep a tiny fit to about a second.
TINY_FIT = {"steps": 3, "vae_steps": 2, "progress": False, "tensorboard": False, "batch_size": 2}
#: Generation options of the tests' tiny models: few steps, no guidance (each test replaces
#: what it varies, e.g. ``GEN.replace(seed=5)``).
GEN = GenerationOptions(num_inference_steps=3, guidance_scale=1.0)


def tiny_samples(n: int = 4, size: int = 16):
    return [synthetic_sample(size, seed=s) for s in range(n)]


@pytest.fixture(scope="module")
def trained_controlnet(tmp_path_factory):
    """(backbone, builder, samples, run folder) of a tiny controlnet_ldm fitted 3 steps."""
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    run = tmp_path_factory.mktemp("controlnet") / "run"
    samples, builder = tiny_samples(), SemanticMapBuilder()
    backbone = ControlNetLDM(preset="tiny")
    backbone.fit(samples, builder, output_dir=str(run), **TINY_FIT)
    return backbone, builder, samples, run
