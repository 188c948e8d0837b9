"""TAEF2 behind the Autoencoder interface: the network fits the published weights and
reconstructs real tissue; a latent backbone trains, saves and loads with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.testing import synthetic_sample
from htd_plugins.backbones.ldm.autoencoders import condition_widths, load_autoencoder
from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder
from tests.htd_plugins.backbones.conftest import GEN, TINY_FIT


def glas_tiles(root, n: int, size: int) -> np.ndarray:
    """``n`` GlaS held-out tiles (official test images), resized to ``size`` px (bicubic)."""
    from PIL import Image

    files = sorted((root / "glas" / "images").glob("test*.png"))[:n]
    return np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((size, size), 3)) for f in files]
    )


def test_published_weights_reconstruct_real_tissue(taef2_weights, shared_data):
    """Zero-shot on 16 GlaS held-out tiles at 64 px: mean L1 about 14.7/255 as the weights'
    README measured (the layout must match exactly: a wrong block order lands far above);
    calibrated latents have unit variance and decode back through the scale and shift."""
    torch.set_num_threads(1)
    ae = load_autoencoder(taef2_weights).frozen("cpu")
    assert isinstance(ae, TinyAutoencoder) and (ae.factor, ae.latent_channels) == (8, 32)
    tiles = glas_tiles(shared_data, 16, 64)
    from htd_core.interfaces.latent import to_model_range, to_uint8

    ae.measure_statistics(tiles)
    with torch.no_grad():
        z = ae.encode(to_model_range(tiles))
        out = to_uint8(ae.decode(z))
    assert z.shape == (16, 32, 8, 8)
    assert float(z.std()) == pytest.approx(1.0, rel=0.05)
    assert abs(float(z.mean())) < 0.05
    error = np.abs(out.astype(np.float64) - tiles).mean()
    assert 10 < error < 17, error  # README: 14.7 on 48 tiles
    # an autoencoder that ignores its input cannot get there: the mean image scores far worse
    assert np.abs(tiles.mean(0, keepdims=True) - tiles).mean() > 2 * error


def test_saved_folder_keeps_weights_and_statistics(taef2_weights, tmp_path):
    ae = TinyAutoencoder.from_weights(taef2_weights)
    ae.measure_statistics(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), np.uint8))
    ae.save(tmp_path / "ae")
    back = load_autoencoder(tmp_path / "ae")
    assert isinstance(back, TinyAutoencoder)
    assert back.scaling_factor == pytest.approx(ae.scaling_factor)
    torch.testing.assert_close(back.latent_mean, ae.latent_mean)
    for (k, a), b in zip(
        ae.module.state_dict().items(), back.module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)


def test_bad_folders_say_what_is_missing(tmp_path, taef2_weights):
    with pytest.raises(InputError, match="not a local folder"):
        load_autoencoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="taef2_encoder.pth"):
        load_autoencoder(tmp_path / "empty")
    half = tmp_path / "half"
    half.mkdir()
    (half / "taef2_encoder.pth").write_bytes((taef2_weights / "taef2_encoder.pth").read_bytes())
    torch.save({"0.weight": torch.zeros(1)}, half / "taef2_decoder.pth")
    with pytest.raises(InputError, match="not a TAEF2 state dict"):
        load_autoencoder(half)


def test_condition_widths_follow_the_factor():
    assert condition_widths((16, 32, 64), 4) == (16, 32, 64)
    assert condition_widths((16, 32, 64), 8) == (16, 32, 64, 64)
    assert condition_widths((8, 16), 2) == (8, 16)
    assert condition_widths((8, 16, 32), 1) == (8,)


@pytest.mark.parametrize("backbone_name", ["controlnet_ldm", "concat_ldm"])
def test_backbone_trains_saves_and_loads_with_taef2(taef2_weights, tmp_path, backbone_name):
    """A tiny backbone with ``autoencoder=<TAEF2 folder>``: 8x latents, no autoencoder
    training, the model folder stores TAEF2 with its statistics and generates the same."""
    from htd_core.plugins import create
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    samples = [synthetic_sample(32, seed=s) for s in range(4)]
    backbone = create("backbones", backbone_name, preset="tiny", image_size=32,
                      autoencoder=str(taef2_weights), device="cpu")  # fmt: skip
    summary = backbone.fit(samples, SemanticMapBuilder(), **TINY_FIT)
    assert summary["vae"]["source"] == str(taef2_weights)
    assert isinstance(backbone.autoencoder, TinyAutoencoder)
    assert backbone.latent_shape(32, 32) == (32, 4, 4)
    assert backbone.size_multiple == 16
    conditions = [SemanticMapBuilder().build(s) for s in samples[:2]]
    images = backbone.generate(conditions, GEN)
    assert images.shape == (2, 32, 32, 3)
    backbone.save(tmp_path / "model")
    # diffusers has no class for TAEF2: no model_index.json claims an AutoencoderKL
    assert not (tmp_path / "model" / "model_index.json").exists()
    loaded = type(backbone).load(tmp_path / "model", device="cpu")
    assert isinstance(loaded.autoencoder, TinyAutoencoder)
    assert loaded.weights_digest() == backbone.weights_digest()
    np.testing.assert_array_equal(loaded.generate(conditions, GEN), images)


def test_image_size_must_fit_the_autoencoder_factor(taef2_weights):
    from htd_core.plugins import create
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    backbone = create("backbones", "controlnet_ldm", preset="tiny", image_size=24,
                      autoencoder=str(taef2_weights), device="cpu")  # fmt: skip
    samples = [synthetic_sample(24, seed=s) for s in range(2)]
    with pytest.raises(InputError, match="multiple of 16 px with this autoencoder"):
        backbone.fit(samples, SemanticMapBuilder(), **TINY_FIT)


def test_train_autoencoder_fine_tunes_taef2_decoder_only(taef2_weights, shared_data, tmp_path):
    """``train_autoencoder`` with ``autoencoder=<TAEF2>``: the encoder (so the latents and
    their calibration) stays as published, the decoder moves, held-out L1 does not get worse
    after a few steps on the training tiles, and a resumed run ends with the same weights."""
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM

    torch.set_num_threads(1)
    train = glas_tiles(shared_data, 24, 32)[8:]
    test = glas_tiles(shared_data, 8, 32)
    published = TinyAutoencoder.from_weights(taef2_weights)
    before = np.abs(published.reconstruct(test).astype(np.float64) - test).mean()
    opts = {"batch_size": 4, "crop_size": 32, "progress": False, "learning_rate": 1e-4}
    whole = ControlNetLDM(
        preset="tiny", image_size=32, autoencoder=str(taef2_weights), device="cpu"
    )
    summary = whole.train_autoencoder(train, steps=6, **opts)
    ae = whole.autoencoder
    assert isinstance(ae, TinyAutoencoder) and summary["steps"] == 6
    for (k, a), b in zip(ae.module.encoder.state_dict().items(),
                         published.module.encoder.state_dict().values(), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=k)
    moved = [not torch.equal(a, b) for a, b in zip(ae.module.decoder.state_dict().values(),
             published.module.decoder.state_dict().values(), strict=True)]  # fmt: skip
    assert any(moved)
    after = np.abs(ae.reconstruct(test).astype(np.float64) - test).mean()
    assert after < before + 1.0, (before, after)
    ckpt = tmp_path / "ae.ckpt"
    part = ControlNetLDM(preset="tiny", image_size=32, autoencoder=str(taef2_weights), device="cpu")
    part.train_autoencoder(train, steps=3, checkpoint=ckpt, checkpoint_every=3, **opts)
    resumed = ControlNetLDM(
        preset="tiny", image_size=32, autoencoder=str(taef2_weights), device="cpu"
    )
    resumed.train_autoencoder(train, steps=6, checkpoint=ckpt, checkpoint_every=3, **opts)
    for (k, a), b in zip(ae.module.state_dict().items(),
                         resumed.autoencoder.module.state_dict().values(), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=k)
