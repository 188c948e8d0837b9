"""concat_ldm: conformance and the learned rescaler."""

from __future__ import annotations

import torch

from htd_core.testing import BackboneConformance
from htd_plugins.backbones.concat_ldm import ConcatLDM
from htd_plugins.backbones.ldm.modules import ConditionRescaler
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

from .conftest import TINY_FIT


class TestConcatConformance(BackboneConformance):
    fit_options = TINY_FIT

    def make_backbone(self):
        return ConcatLDM(preset="tiny")

    def make_builder(self):
        return SemanticMapBuilder()


def test_rescaler_brings_condition_to_latent_grid():
    rescaler = ConditionRescaler(in_channels=3, out_channels=4, n_stages=2)
    assert rescaler(torch.ones(2, 3, 32, 32)).shape == (2, 4, 8, 8)


def test_unet_input_is_latents_plus_rescaled_condition():
    from htd_plugins.backbones.ldm.kl import KLAutoencoder

    backbone = ConcatLDM(preset="tiny")
    # fit builds the parts once the backbone has its autoencoder (its factor sizes the UNet)
    backbone.autoencoder = KLAutoencoder.build(backbone.preset.vae, backbone.image_size)
    parts = backbone.build_parts(num_channels=3, token_dim=0, latent_channels=4)
    assert parts["unet"].config.in_channels == 4 + backbone.preset.rescaler_channels
    assert parts["rescaler"].config.n_stages == 1  # the tiny autoencoder is f2
    unconditional = backbone.build_parts(num_channels=0, token_dim=0, latent_channels=4)
    assert "rescaler" not in unconditional and unconditional["unet"].config.in_channels == 4
