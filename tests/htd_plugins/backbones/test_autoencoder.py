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
