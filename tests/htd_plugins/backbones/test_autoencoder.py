"""The KL autoencoder: deterministic, resumable training; measured scale; loading errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_plugins.backbones.ldm.autoencoder import (
    build_vae,
    load_vae,
    measure_scaling_factor,
    train_vae,
)
from htd_plugins.backbones.ldm.presets import get_preset


def images(n: int = 6, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_training_resumes_exactly_and_measures_scale(tmp_path):
    cfg, data = get_preset("tiny").vae, images()
    whole = build_vae(cfg, 16)
    summary = train_vae(whole, data, steps=4, batch_size=2, crop_size=8)
    part = build_vae(cfg, 16)
    ckpt = tmp_path / "vae.ckpt"
    train_vae(part, data, steps=2, batch_size=2, crop_size=8, checkpoint=ckpt, checkpoint_every=2)
    resumed = build_vae(cfg, 16)
    train_vae(
        resumed, data, steps=4, batch_size=2, crop_size=8, checkpoint=ckpt, checkpoint_every=2
    )
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    assert summary["scaling_factor"] == pytest.approx(whole.config.scaling_factor)
    assert summary["scaling_factor"] == pytest.approx(measure_scaling_factor(whole, data))
    with torch.no_grad():
        x = torch.from_numpy(data).permute(0, 3, 1, 2).float() / 127.5 - 1
        std = float(whole.encode(x).latent_dist.sample(torch.Generator().manual_seed(0)).std())
    assert summary["scaling_factor"] == pytest.approx(1 / std, rel=0.1)


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="not a local folder and the hub is offline"):
        load_vae("someone/some-vae")
    with pytest.raises(InputError, match="no config.json"):
        load_vae(tmp_path)
    vae = build_vae(get_preset("tiny").vae, 16)
    vae.save_pretrained(tmp_path / "sd" / "vae")
    assert load_vae(tmp_path / "sd").config.latent_channels == 4  # a pipeline folder's vae/
    with pytest.raises(InputError, match="no images"):
        train_vae(vae, images(0), steps=1)


def weights(vae) -> list[torch.Tensor]:
    return [t.clone() for t in vae.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_adversarial_weight_zero_is_todays_training(tmp_path):
    cfg, data = get_preset("tiny").vae, images()
    plain = build_vae(cfg, 16)
    summary = train_vae(plain, data, steps=3, batch_size=2, crop_size=8)
    off = build_vae(cfg, 16)
    ckpt = tmp_path / "vae.ckpt"
    train_vae(
        off, data, steps=3, batch_size=2, crop_size=8, checkpoint=ckpt, checkpoint_every=3,
        adversarial_weight=0.0, adversarial_start=1, discriminator_learning_rate=1e-2,
    )  # fmt: skip
    assert same(weights(plain), weights(off))
    assert "final_discriminator_loss" not in summary
    assert set(torch.load(ckpt, weights_only=True)) == {"step", "vae", "optimizer"}


def test_adversarial_term_trains_a_discriminator_and_changes_the_autoencoder():
    cfg, data = get_preset("tiny").vae, images()
    plain = build_vae(cfg, 16)
    train_vae(plain, data, steps=3, batch_size=2, crop_size=8)
    adv = build_vae(cfg, 16)
    summary = train_vae(adv, data, steps=3, batch_size=2, crop_size=8, adversarial_weight=0.5)
    assert np.isfinite(summary["final_discriminator_loss"])
    assert summary["final_discriminator_loss"] > 0
    assert summary["final_adversarial_weight"] > 0
    assert not same(weights(plain), weights(adv))
    late = build_vae(cfg, 16)  # starts after the last step: no term, no discriminator update
    summary = train_vae(
        late, data, steps=3, batch_size=2, crop_size=8, adversarial_weight=0.5,
        adversarial_start=3,
    )  # fmt: skip
    assert same(weights(plain), weights(late))
    assert summary["final_discriminator_loss"] is None


def test_adversarial_training_resumes_exactly(tmp_path):
    cfg, data = get_preset("tiny").vae, images()
    adv = {"adversarial_weight": 0.5, "adversarial_start": 1}
    whole = build_vae(cfg, 16)
    train_vae(whole, data, steps=5, batch_size=2, crop_size=8, **adv)
    ckpt = tmp_path / "vae.ckpt"
    for steps in (3, 5):  # interrupted after 3 steps (2 of them adversarial), then resumed
        resumed = build_vae(cfg, 16)
        train_vae(
            resumed, data, steps=steps, batch_size=2, crop_size=8, checkpoint=ckpt,
            checkpoint_every=3, **adv,
        )  # fmt: skip
    assert "discriminator_optimizer" in torch.load(ckpt, weights_only=True)
    assert same(weights(whole), weights(resumed))
    plain_ckpt = tmp_path / "plain.ckpt"  # written without the term, past its start: refused
    train_vae(
        build_vae(cfg, 16), data, steps=2, batch_size=2, crop_size=8, checkpoint=plain_ckpt,
        checkpoint_every=2,
    )  # fmt: skip
    with pytest.raises(InputError, match="without the adversarial term"):
        train_vae(build_vae(cfg, 16), data, steps=3, checkpoint=plain_ckpt, crop_size=8, **adv)


@pytest.mark.parametrize(
    ("option", "value"),
    [("adversarial_weight", -0.1), ("adversarial_start", -1), ("adversarial_weight", float("nan"))],
)
def test_bad_adversarial_options_are_refused(option, value):
    from htd_plugins.backbones.ldm.training import TrainOptions

    with pytest.raises(InputError, match=f"{option}="):
        train_vae(build_vae(get_preset("tiny").vae, 16), images(), steps=1, **{option: value})
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
