"""The KL autoencoder: deterministic, resumable training; measured scale; loading errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.interfaces.latent import to_model_range
from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
from htd_plugins.backbones.ldm.autoencoder_training import (
    AutoencoderTrainOptions,
    train_autoencoder_loop,
)
from htd_plugins.backbones.ldm.kl import KLAutoencoder
from htd_plugins.backbones.ldm.presets import get_preset
from htd_plugins.backbones.ldm.progress import Clock


def images(n: int = 6, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def build() -> KLAutoencoder:
    """A fresh tiny KL autoencoder (seed 0)."""
    return KLAutoencoder.build(get_preset("tiny").vae, 16)


def train(ae: KLAutoencoder, data: np.ndarray, *, checkpoint=None, **options) -> dict:
    """``ae`` trained on the CPU with ``options`` over AutoencoderTrainOptions' defaults."""
    opts = AutoencoderTrainOptions(**options)
    return train_autoencoder_loop(
        ae, data, opts, device="cpu", clock=Clock(None), checkpoint=checkpoint
    )


def test_training_resumes_exactly_and_measures_scale(tmp_path):
    """Through the backbone's ``train_autoencoder`` (what fit, train-vae and the experiment
    call): a run resumed from its checkpoint ends with the weights of an uninterrupted one."""
    data = images()
    opts = {"batch_size": 2, "crop_size": 8, "progress": False}
    whole = ControlNetLDM(preset="tiny", device="cpu")
    summary = whole.train_autoencoder(data, steps=4, **opts)
    ckpt = tmp_path / "vae.ckpt"
    part = ControlNetLDM(preset="tiny", device="cpu")
    part.train_autoencoder(data, steps=2, checkpoint=ckpt, checkpoint_every=2, **opts)
    resumed = ControlNetLDM(preset="tiny", device="cpu")
    resumed.train_autoencoder(data, steps=4, checkpoint=ckpt, checkpoint_every=2, **opts)
    a, b = whole.autoencoder.module.state_dict(), resumed.autoencoder.module.state_dict()
    for (k, x), y in zip(a.items(), b.values(), strict=True):
        torch.testing.assert_close(x, y, msg=k)
    assert summary["steps"] == 4 and summary["options"]["steps"] == 4
    ae = whole.autoencoder
    assert summary["scaling_factor"] == pytest.approx(ae.scaling_factor)
    assert summary["scaling_factor"] == pytest.approx(ae.module.config.scaling_factor)
    assert summary["scaling_factor"] == pytest.approx(ae.measure_scaling_factor(data))
    with torch.no_grad():
        x = torch.from_numpy(data).permute(0, 3, 1, 2).float() / 127.5 - 1
        std = float(ae.module.encode(x).latent_dist.sample(torch.Generator().manual_seed(0)).std())
    assert summary["scaling_factor"] == pytest.approx(1 / std, rel=0.1)
    # the trained autoencoder encodes to the scaled posterior mean and decodes back
    mean, _ = ae.distribution(to_model_range(data))
    torch.testing.assert_close(ae.encode(to_model_range(data)), mean * ae.scaling_factor)
    assert whole.reconstruct(data).shape == data.shape


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # online or not: htd downloads nothing
    with pytest.raises(InputError, match=r"is not a local folder \(htd downloads nothing\)"):
        KLAutoencoder.load("someone/some-vae")
    with pytest.raises(InputError, match="no config.json"):
        KLAutoencoder.load(tmp_path)
    ae = build()
    ae.module.save_pretrained(tmp_path / "sd" / "vae")
    assert KLAutoencoder.load(tmp_path / "sd").latent_channels == 4  # a pipeline folder's vae/
    with pytest.raises(InputError, match="no images"):
        train(ae, images(0), steps=1)
    with pytest.raises(InputError, match="no images"):
        ControlNetLDM(preset="tiny", device="cpu").train_autoencoder(images(0), progress=False)


def weights(ae) -> list[torch.Tensor]:
    module = ae.module if isinstance(ae, KLAutoencoder) else ae
    return [t.clone() for t in module.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_adversarial_weight_zero_is_todays_training(tmp_path):
    data = images()
    plain = build()
    summary = train(plain, data, steps=3, batch_size=2, crop_size=8)
    off = build()
    ckpt = tmp_path / "vae.ckpt"
    train(
        off, data, steps=3, batch_size=2, crop_size=8, checkpoint=ckpt, checkpoint_every=3,
        adversarial_weight=0.0, adversarial_start=1, discriminator_learning_rate=1e-2,
    )  # fmt: skip
    assert same(weights(plain), weights(off))
    assert "final_discriminator_loss" not in summary
    assert set(torch.load(ckpt, weights_only=True)) == {"step", "vae", "optimizer", "options"}


def test_adversarial_term_trains_a_discriminator_and_changes_the_autoencoder():
    data = images()
    plain = build()
    train(plain, data, steps=3, batch_size=2, crop_size=8)
    adv = build()
    summary = train(adv, data, steps=3, batch_size=2, crop_size=8, adversarial_weight=0.5)
    assert np.isfinite(summary["final_discriminator_loss"])
    assert summary["final_discriminator_loss"] > 0
    assert summary["final_adversarial_weight"] > 0
    assert not same(weights(plain), weights(adv))
    late = build()  # starts after the last step: no term, no discriminator update
    summary = train(
        late, data, steps=3, batch_size=2, crop_size=8, adversarial_weight=0.5,
        adversarial_start=3,
    )  # fmt: skip
    assert same(weights(plain), weights(late))
    assert summary["final_discriminator_loss"] is None


def test_adversarial_training_resumes_exactly(tmp_path):
    data = images()
    adv = {"adversarial_weight": 0.5, "adversarial_start": 1}
    whole = build()
    train(whole, data, steps=5, batch_size=2, crop_size=8, **adv)
    ckpt = tmp_path / "vae.ckpt"
    for steps in (3, 5):  # interrupted after 3 steps (2 of them adversarial), then resumed
        resumed = build()
        train(
            resumed, data, steps=steps, batch_size=2, crop_size=8, checkpoint=ckpt,
            checkpoint_every=3, **adv,
        )  # fmt: skip
    assert "discriminator_optimizer" in torch.load(ckpt, weights_only=True)
    assert same(weights(whole), weights(resumed))
    plain_ckpt = tmp_path / "plain.ckpt"  # written without the term, past its start: refused
    train(
        build(), data, steps=2, batch_size=2, crop_size=8, checkpoint=plain_ckpt,
        checkpoint_every=2,
    )  # fmt: skip
    with pytest.raises(InputError, match="without the adversarial term"):
        train(build(), data, steps=3, batch_size=2, checkpoint=plain_ckpt, crop_size=8, **adv)
    with pytest.raises(InputError, match=r"other options \(batch_size: 2 -> 16\)"):
        train(build(), data, steps=3, checkpoint=plain_ckpt, crop_size=8)


@pytest.mark.parametrize(
    ("option", "value"),
    [("adversarial_weight", -0.1), ("adversarial_start", -1), ("adversarial_weight", float("nan"))],
)
def test_bad_adversarial_options_are_refused(option, value):
    from htd_plugins.backbones.ldm.training import TrainOptions

    with pytest.raises(InputError, match=f"{option}="):
        AutoencoderTrainOptions(steps=1, **{option: value})
    with pytest.raises(InputError, match=f"{option}="):  # before any training
        ControlNetLDM(preset="tiny", device="cpu").train_autoencoder(
            images(), steps=1, progress=False, **{option: value}
        )
    with pytest.raises(InputError, match=f"fit option vae_{option}="):
        TrainOptions(**{f"vae_{option}": value})


def test_adversarial_options_are_trajectory_options_absent_at_default():
    from htd_plugins.backbones.ldm.training import TrainOptions

    assert "vae_adversarial_weight" not in TrainOptions().trajectory_config()
    config = TrainOptions(vae_adversarial_weight=0.5, vae_adversarial_start=10).trajectory_config()
    assert config["vae_adversarial_weight"] == 0.5 and config["vae_adversarial_start"] == 10


def test_discriminator_gives_a_patch_map():
    from htd_plugins.backbones.ldm.discriminator import build_discriminator

    for size, side in ((32, 2), (16, 2), (8, 2), (64, 6), (256, 30)):  # 256: pix2pix's 30 x 30
        net = build_discriminator(size, seed=1)
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 1, side, side)
    a, b = build_discriminator(32, seed=1), build_discriminator(32, seed=1)
    assert same(weights(a), weights(b))
    assert not same(weights(a), weights(build_discriminator(32, seed=2)))
    with pytest.raises(InputError, match="at least 8 px"):
        build_discriminator(4)


def test_a_checkpoint_of_other_options_or_a_crop_larger_than_the_patches_is_refused(tmp_path):
    """Resuming an autoencoder checkpoint trained with other options would mix two trainings:
    refused, naming what differs (steps may grow); a crop larger than the patches is an error
    naming the largest valid one, not silently the whole patch."""
    data, ckpt = images(), tmp_path / "vae.ckpt"
    backbone = ControlNetLDM(preset="tiny", device="cpu")
    opts = {"batch_size": 2, "checkpoint": ckpt, "checkpoint_every": 1, "progress": False}
    backbone.train_autoencoder(data, steps=1, crop_size=8, **opts)
    backbone.train_autoencoder(data, steps=2, crop_size=8, **opts)  # more steps: resumes
    with pytest.raises(InputError, match=r"other options \(crop_size: 8 -> 12\)"):
        backbone.train_autoencoder(data, steps=3, crop_size=12, **opts)
    with pytest.raises(
        InputError, match="crop_size=40 px is larger than the 16 x 16 px patches: give at most 16"
    ):
        backbone.train_autoencoder(data, steps=1, crop_size=40, progress=False)
    with pytest.raises(InputError, match="autoencoder steps=0 must be an integer >= 1"):
        backbone.train_autoencoder(data, steps=0, progress=False)
