"""Pixel-space diffusion: the latent backbones with ``autoencoder="pixels"`` (the identity
autoencoder, factor 1) train, save, load and generate the same; the round trip is exact."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.testing import synthetic_sample
from htd_plugins.backbones.ldm.autoencoders import autoencoder_kind, load_autoencoder
from htd_plugins.backbones.ldm.pixels import PixelSpace
from tests.htd_plugins.backbones.conftest import GEN, TINY_FIT


def test_the_round_trip_is_exact_and_a_saved_folder_loads_back(tmp_path):
    ae = load_autoencoder("pixels")
    assert isinstance(ae, PixelSpace) and (ae.factor, ae.latent_channels) == (1, 3)
    x = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(ae.reconstruct(x), x)
    ae.save(tmp_path / "ae")
    assert autoencoder_kind(tmp_path / "ae") == ("pixels", tmp_path / "ae")
    assert isinstance(load_autoencoder(tmp_path / "ae"), PixelSpace)
    with pytest.raises(InputError, match="'pixels' for pixel-space diffusion"):
        load_autoencoder(tmp_path / "nothing-here")


@pytest.mark.parametrize("backbone_name", ["controlnet_ldm", "concat_ldm"])
def test_backbone_denoises_pixels_and_saves_and_loads(tmp_path, backbone_name):
    from htd_core.plugins import create
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    samples = [synthetic_sample(16, seed=s) for s in range(4)]
    backbone = create("backbones", backbone_name, preset="tiny", image_size=16,
                      autoencoder="pixels", device="cpu")  # fmt: skip
    summary = backbone.fit(samples, SemanticMapBuilder(), **TINY_FIT)
    assert summary["vae"]["source"] == "pixels" and summary["vae"]["scaling_factor"] == 1.0
    assert backbone.latent_shape(16, 16) == (3, 16, 16)  # the image itself
    conditions = [SemanticMapBuilder().build(s) for s in samples[:2]]
    images = backbone.generate(conditions, GEN)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    backbone.save(tmp_path / "model")
    loaded = type(backbone).load(tmp_path / "model", device="cpu")
    assert isinstance(loaded.autoencoder, PixelSpace)
    assert loaded.weights_digest() == backbone.weights_digest()
    np.testing.assert_array_equal(loaded.generate(conditions, GEN), images)
