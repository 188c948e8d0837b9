"""The experiment with a pretrained autoencoder (``model: {autoencoder: TAEF2 folder}``): not
trained, calibrated once on the training patches, shared by the arms, its reconstruction row
scored; a folder that holds none is refused before any data is read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import ConfigError, InputError
from htd_plugins.experiment import Experiment
from tests.htd_plugins.experiment.test_truth import glas


def test_taef2_is_calibrated_once_and_shared(shared_data, taef2_weights, tmp_path):
    from htd_plugins.backbones.ldm.autoencoders import load_autoencoder
    from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder

    cfg = glas(Path(shared_data), evaluators=["frechet"], encoders=["efficientnet_lite0"],
               seeds=[0], model={"autoencoder": str(taef2_weights)},
               figure={"rows": 2, "autoencoders": {"TAEF2 again": str(taef2_weights)}})  # fmt: skip
    out = tmp_path / "run"
    exp = Experiment(cfg, output_dir=out, log=lambda text: None)
    exp.run()
    results = json.loads((out / "results.json").read_text())
    vae = results["autoencoder"]
    assert vae["source"] == "pretrained" and vae["steps"] == 0 and vae["factor"] == 8
    assert 5 < vae["reconstruction_mae_test"] < 30  # real tissue through TAEF2 at 32 px
    shared = load_autoencoder(out / "autoencoder")
    assert isinstance(shared, TinyAutoencoder)
    model = load_autoencoder(out / "arms" / "crop" / "seed-0" / "train" / "model" / "vae")
    assert isinstance(model, TinyAutoencoder)
    assert model.scaling_factor == pytest.approx(shared.scaling_factor)  # the same calibration
    fd = results["scores"]["frechet"]["crop"]["0"]["encoders"]["efficientnet_lite0"]
    assert fd["fd_reconstruction"] > 0 and fd["n_reconstruction"] == fd["n_synthetic"]
    stages = json.loads((out / "stages" / "autoencoder.json").read_text())
    assert stages["result"]["source"] == "pretrained"
    # figure.png's round-trip columns: the run's autoencoder and the file's extra folder, the
    # same weights calibrated on the same patches, so the same reconstructions
    from htd_plugins.experiment.figures import round_trips

    real = [s.image for s in exp.data.test[:2]]
    trips = round_trips(exp, real)
    assert list(trips) == ["autoencoder (round trip)", "TAEF2 again"]
    own, extra = (trips[k].astype(float) for k in trips)
    assert own.shape == (2, *real[0].shape) and abs(own - extra).max() <= 1
    assert 3 < abs(own - np.stack(real)).mean() < 40  # a round trip, not a copy or noise
    assert (out / "figure.png").stat().st_size > 1000


def test_an_arm_on_taef2_beside_the_shared_kl_autoencoder(shared_data, taef2_weights, tmp_path):
    """An ablation arm whose ``options`` name the TAEF2 folder (docs/results.md, the TAEF2
    latent row) trains and decodes on TAEF2, calibrated on the training patches, while the
    crop arm keeps the run's own KL autoencoder; ``decoded_by`` names each arm's folder."""
    from htd_plugins.backbones.ldm.autoencoders import load_autoencoder
    from htd_plugins.backbones.ldm.kl import KLAutoencoder
    from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder

    crop = {"name": "crop", "placement": "outside", "max_fraction": 0.5, "min_size": 8}
    arm = {"name": "crop_taef2", "builders": ["semantic_map", crop],
           "options": {"autoencoder": str(taef2_weights)}}  # fmt: skip
    cfg = glas(Path(shared_data), evaluators=["frechet"], encoders=["efficientnet_lite0"],
               seeds=[0], arms=["crop", arm])  # fmt: skip
    out = tmp_path / "run"
    Experiment(cfg, output_dir=out, log=lambda text: None).run()
    results = json.loads((out / "results.json").read_text())
    vae = results["autoencoder"]
    assert vae.get("source") != "pretrained" and vae["steps"] > 0  # the shared one: trained here
    models = {a: out / "arms" / a / "seed-0" / "train" / "model" / "vae" for a in ("crop", "crop_taef2")}  # fmt: skip
    assert isinstance(load_autoencoder(models["crop"]), KLAutoencoder)
    taef2 = load_autoencoder(models["crop_taef2"])
    assert isinstance(taef2, TinyAutoencoder)
    published = TinyAutoencoder.from_weights(taef2_weights)
    assert taef2.scaling_factor != pytest.approx(published.scaling_factor)  # calibrated here
    assert results["decoded_by"]["crop_taef2"] == str(taef2_weights)
    assert results["decoded_by"]["crop"] == vae["path"]
    images = out / "arms" / "crop_taef2" / "seed-0" / "synthetic" / "images"
    assert len(list(images.iterdir())) == results["budget"]["n_synthetic"]
    assert [a["arm"] for a in results["ablation"]] == ["crop_taef2"]  # read against crop


def test_decoder_fine_tuning_is_a_budget_option(shared_data, taef2_weights, tmp_path):
    """``vae_finetune_steps``: the shared autoencoder is TAEF2 with its decoder trained on the
    training patches (encoder as published), recorded as such."""
    import torch

    from htd_plugins.backbones.ldm.autoencoders import load_autoencoder
    from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder
    from htd_plugins.experiment.autoencoder import shared_autoencoder

    cfg = glas(Path(shared_data), evaluators=["frechet"], encoders=["efficientnet_lite0"],
               seeds=[0], model={"autoencoder": str(taef2_weights)},
               budget_options={"vae_finetune_steps": 3})  # fmt: skip
    run = Experiment(cfg, output_dir=tmp_path / "run", log=lambda text: None)
    run.out.mkdir()
    run.load_data()
    vae = shared_autoencoder(run)
    assert vae["source"] == "pretrained, decoder fine-tuned" and vae["steps"] == 3
    tuned, published = load_autoencoder(vae["path"]), TinyAutoencoder.from_weights(taef2_weights)
    assert all(torch.equal(a, b) for a, b in zip(tuned.module.encoder.state_dict().values(),
               published.module.encoder.state_dict().values(), strict=True))  # fmt: skip
    assert not all(torch.equal(a, b) for a, b in zip(tuned.module.decoder.state_dict().values(),
                   published.module.decoder.state_dict().values(), strict=True))  # fmt: skip
    assert shared_autoencoder(run) == vae  # a finished stage is reused


def test_a_folder_without_an_autoencoder_is_refused_first(shared_data, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = glas(Path(shared_data), model={"autoencoder": str(tmp_path / "empty")})
    with pytest.raises(ConfigError, match="holds no autoencoder htd reads"):
        Experiment(cfg, output_dir=tmp_path / "run", log=lambda text: None)
    assert not (tmp_path / "run").exists()


def test_pixel_space_needs_no_autoencoder_and_its_round_trip_is_real(shared_data, tmp_path):
    """``model: {autoencoder: pixels}``: nothing trained or calibrated, the reconstruction row
    equals real vs real (the round trip is exact), the arm denoises 32 x 32 x 3 pixels."""
    cfg = glas(Path(shared_data), evaluators=["frechet"], encoders=["efficientnet_lite0"],
               seeds=[0], model={"autoencoder": "pixels"})  # fmt: skip
    out = tmp_path / "run"
    Experiment(cfg, output_dir=out, log=lambda text: None).run()
    results = json.loads((out / "results.json").read_text())
    vae = results["autoencoder"]
    assert vae["factor"] == 1 and vae["reconstruction_mae_test"] == 0
    fd = results["scores"]["frechet"]["crop"]["0"]["encoders"]["efficientnet_lite0"]
    assert fd["fd_reconstruction"] == pytest.approx(fd["fd_real_train"])
    model = json.loads(
        (Path(results["arms"]["crop"]["0"]["model_dir"]) / "vae" / "config.json").read_text()
    )
    assert model["htd_autoencoder"] == "pixels"
    with pytest.raises(InputError, match="has no weights to train"):
        Experiment({**cfg, "budget_options": {"vae_finetune_steps": 2}}, output_dir=tmp_path / "b",
                   log=lambda text: None).run()  # fmt: skip
