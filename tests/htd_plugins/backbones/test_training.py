"""Training: resume equality, config changes on resume, NaN loss, latent cache, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.generation import GenerationOptions
from htd_core.options import override
from htd_core.types import Condition
from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
from htd_plugins.backbones.ldm.checkpoint import list_checkpoints, load_checkpoint
from htd_plugins.backbones.ldm.trainer import BatchSource
from htd_plugins.backbones.ldm.training import EMA, NonFiniteLossError, TrainOptions, stream_indices
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

from .conftest import tiny_samples

RUN = {
    "steps": 6, "vae_steps": 2, "checkpoint_every": 2, "batch_size": 2,
    "gradient_accumulation_steps": 2, "progress": False, "tensorboard": False,
    "augment": {"dihedral": True, "brightness": 0.1, "hed_sigma": 0.05},
}  # fmt: skip


def weights(backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backbone.denoiser.state_dict().items()}


class Interrupt(Exception):
    pass


def interrupt_at(step: int):
    def callback(done: int, loss: float, denoiser) -> None:
        if done == step:
            raise Interrupt(f"killed after step {done}")

    return callback


def test_resumed_run_equals_uninterrupted(tmp_path):
    samples, builder = tiny_samples(), SemanticMapBuilder()
    whole = ControlNetLDM(preset="tiny")
    whole.fit(samples, builder, output_dir=str(tmp_path / "a"), **RUN)

    first = ControlNetLDM(preset="tiny")
    with pytest.raises(Interrupt):  # killed after step 5; the last checkpoint is step 4
        first.fit(
            samples, builder, output_dir=str(tmp_path / "b"), callbacks=[interrupt_at(5)], **RUN
        )
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == [
        "step-00000002.pt",
        "step-00000004.pt",
    ]
    resumed = ControlNetLDM(preset="tiny")
    summary = resumed.fit(samples, builder, output_dir=str(tmp_path / "b"), **RUN)
    assert summary["start_step"] == 4 and summary["steps"] == 6

    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # the raw (non-EMA) weights of the final checkpoints agree too, and training moved them
    ca = load_checkpoint(list_checkpoints(tmp_path / "a")[-1])["denoiser"]
    cb = load_checkpoint(list_checkpoints(tmp_path / "b")[-1])["denoiser"]
    for k in ca:
        torch.testing.assert_close(ca[k], cb[k], rtol=1e-5, atol=1e-6, msg=k)
    fresh = ControlNetLDM(preset="tiny")
    fresh.fit(samples, builder, **{**RUN, "steps": 1})
    assert any(not torch.equal(ca[k], v) for k, v in fresh.denoiser.state_dict().items())
    # a different seed gives different weights (the test can fail)
    other = ControlNetLDM(preset="tiny")
    other.fit(samples, builder, output_dir=str(tmp_path / "c"), seed=1, **RUN)
    assert any(not torch.allclose(a[k], v) for k, v in weights(other).items())


def test_resume_with_changed_config_lists_keys(tmp_path):
    samples, builder = tiny_samples(), SemanticMapBuilder()
    run = {**RUN, "steps": 2, "gradient_accumulation_steps": 1}
    ControlNetLDM(preset="tiny").fit(samples, builder, output_dir=str(tmp_path), **run)
    changed = {**run, "learning_rate": 0.5, "batch_size": 3}
    with pytest.raises(InputError, match=r"batch_size: 2 -> 3.*learning_rate: 0\.001 -> 0\.5"):
        ControlNetLDM(preset="tiny").fit(samples, builder, output_dir=str(tmp_path), **changed)
    with pytest.raises(InputError, match="condition_dropout"):
        ControlNetLDM(preset="tiny", condition_dropout=0.3).fit(
            samples, builder, output_dir=str(tmp_path), **run
        )
    # more steps is not a change of configuration: the run continues
    summary = ControlNetLDM(preset="tiny").fit(
        samples, builder, output_dir=str(tmp_path), **{**run, "steps": 3}
    )
    assert summary["start_step"] == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    def poison(done, loss, denoiser):
        if done == 2:
            with torch.no_grad():
                next(denoiser.parameters()).fill_(float("nan"))

    samples, builder = tiny_samples(), SemanticMapBuilder()
    backbone = ControlNetLDM(preset="tiny")
    run = {**RUN, "gradient_accumulation_steps": 1}
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 2.*step-00000002\.pt"):
        backbone.fit(samples, builder, output_dir=str(tmp_path), callbacks=[poison], **run)
    kept = list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step-00000002.pt"]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(kept[0])["denoiser"].values())
    assert not (tmp_path / "model").exists()


def test_latent_cache_matches_encoding():
    from htd_plugins.backbones.ldm.augment import Augmentation
    from htd_plugins.backbones.ldm.kl import KLAutoencoder
    from htd_plugins.backbones.ldm.presets import get_preset

    samples = tiny_samples()
    ae = KLAutoencoder.build(get_preset("tiny").vae, 16).frozen("cpu")
    ae.scaling_factor = 0.5
    kwargs = {"batch_size": 3, "image_size": 16, "seed": 0, "device": torch.device("cpu")}
    aug = Augmentation(dihedral=True, brightness=0.0, hed_sigma=0.0)
    cached = BatchSource(samples, SemanticMapBuilder(), ae, aug, cache=True, **kwargs)
    direct = BatchSource(samples, SemanticMapBuilder(), ae, aug, cache=False, **kwargs)
    for step in range(3):
        lat_c, sp_c, _ = cached.batch(step, 0, 0, 1, 1)
        lat_d, sp_d, _ = direct.batch(step, 0, 0, 1, 1)
        torch.testing.assert_close(lat_c, lat_d, rtol=1e-4, atol=1e-5)
        assert torch.equal(sp_c, sp_d)


def test_prefetched_batches_equal_drawn_ones(monkeypatch):
    """A micro-batch drawn ahead on the background thread equals one drawn when asked (also
    after a jump in steps, as on resume); an error drawing it is raised at its step. Nothing
    is drawn ahead while torch uses every core."""
    from htd_plugins.backbones.ldm.augment import Augmentation
    from htd_plugins.backbones.ldm.kl import KLAutoencoder
    from htd_plugins.backbones.ldm.presets import get_preset

    def for_step(sample, step):
        if step == 5:
            raise InputError("no sample at step 5")
        return sample

    class LearnedScale(SemanticMapBuilder):  # a builder with a model in it (as embeddings)
        scale = torch.ones(1, requires_grad=True)

        def build(self, sample, *, seed=None):
            c = super().build(sample, seed=seed)
            return Condition(spatial=c.spatial * self.scale, channels=c.channels)

    ae = KLAutoencoder.build(get_preset("tiny").vae, 16).frozen("cpu")
    kwargs = {"batch_size": 3, "image_size": 16, "seed": 0, "device": torch.device("cpu"),
              "for_step": for_step, "cache": False}  # fmt: skip
    aug = Augmentation(dihedral=True, brightness=0.1, hed_sigma=0.05)
    ahead = BatchSource(tiny_samples(), LearnedScale(), ae, aug, prefetch=True, **kwargs)
    drawn = BatchSource(tiny_samples(), LearnedScale(), ae, aug, prefetch=False, **kwargs)
    monkeypatch.setattr("htd_core.threads.all_cores", lambda: torch.get_num_threads())
    ahead.draw_next(0, 0, 0, 1, 2)
    assert ahead._ahead is None  # no core to spare
    monkeypatch.setattr("htd_core.threads.all_cores", lambda: torch.get_num_threads() + 1)
    for step, micro in [(0, 0), (0, 1), (1, 0), (1, 1), (3, 1), (2, 0), (4, 0), (4, 1)]:
        pairs = zip(
            ahead.batch(step, micro, 0, 1, 2), drawn.batch(step, micro, 0, 1, 2), strict=True
        )
        for a, b in pairs:
            assert b is None if a is None else torch.equal(a, b) and not a.requires_grad
        ahead.draw_next(step, micro, 0, 1, 2)  # as the loop does, before the backward pass
        assert ahead._ahead is not None
    with pytest.raises(InputError, match="no sample at step 5"):  # drawn ahead after (4, 1)
        ahead.batch(5, 0, 0, 1, 2)
    ahead.close()
    ahead.draw_next(6, 0, 0, 1, 2)
    assert ahead._ahead is None
    assert ahead.batch(6, 1, 0, 1, 2)[0].shape == (3, 4, 8, 8)  # closed: drawn when asked


def test_drawing_ahead_changes_no_weight(monkeypatch):
    """A fit whose micro-batches are drawn ahead ends with the same weights as one drawing
    each when asked."""
    samples, builder = tiny_samples(), SemanticMapBuilder()
    monkeypatch.setattr("htd_core.threads.all_cores", lambda: torch.get_num_threads() + 1)
    ahead = ControlNetLDM(preset="tiny")
    ahead.fit(samples, builder, **RUN)
    monkeypatch.setattr(BatchSource, "draw_next", lambda self, *key: None)
    asked = ControlNetLDM(preset="tiny")
    asked.fit(samples, builder, **RUN)
    expected = weights(asked)
    for name, value in weights(ahead).items():
        assert torch.equal(value, expected[name]), name


def test_stream_visits_every_sample_once_per_epoch():
    first = stream_indices(5, 0, 5, seed=3)
    assert sorted(first) == list(range(5))
    assert sorted(stream_indices(5, 5, 5, seed=3)) == list(range(5))
    assert stream_indices(5, 2, 6, seed=3)[:3] == first[2:]


def test_ema_follows_parameters():
    module = torch.nn.Linear(2, 1)
    ema = EMA(module, decay=0.9)
    with torch.no_grad():
        module.weight.fill_(1.0)
    before = ema.shadow["weight"].clone()
    ema.update(module, step=1000)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * before + 0.1 * torch.ones_like(before))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stpes": 3}, r"fit has no option 'stpes'. Did you mean 'steps'\?"),
        ({"steps": 0}, r"steps=0 must be an integer >= 1"),
        ({"ema_decay": 1.5}, r"ema_decay=1.5"),
        ({"mixed_precision": "fp8"}, r"mixed_precision='fp8'"),
        ({"augment": {"hed_sigma": 2}}, r"hed_sigma=2"),
    ],
)
def test_bad_fit_options(options, message):
    with pytest.raises(InputError, match=message):
        ControlNetLDM(preset="tiny").fit(tiny_samples(2), SemanticMapBuilder(), **options)


def test_bad_backbone_options_and_samples():
    with pytest.raises(InputError, match="unknown backbone preset 'smal'. Did you mean 'small'"):
        ControlNetLDM(preset="smal")
    with pytest.raises(InputError, match="prediction_type"):
        ControlNetLDM(preset="tiny", prediction_type="x0")
    with pytest.raises(InputError, match="smaller than the model's 16 px"):
        ControlNetLDM(preset="tiny").fit(tiny_samples(2, size=8), SemanticMapBuilder(), steps=1)
    with pytest.raises(InputError, match="no training samples"):
        ControlNetLDM(preset="tiny").fit([], SemanticMapBuilder(), steps=1)
    # fit's options over the preset's: keys not given keep the preset's value
    assert override(TrainOptions(batch_size=7), {}, "fit").batch_size == 7
    assert override(ControlNetLDM(preset="tiny").preset.train, {"steps": 5}, "fit").batch_size == 4
    # generation settings are no longer constructor options: the message says where they went
    for moved in ("num_inference_steps", "guidance_scale", "scheduler", "batch_size"):
        with pytest.raises(
            InputError, match=f"'{moved}' is no longer an option here: it is a generation option"
        ):
            ControlNetLDM(preset="tiny", **{moved: 2})
    with pytest.raises(
        InputError, match="'vae' is no longer an option here: it is called `autoencoder`"
    ):
        ControlNetLDM(preset="tiny", vae="some/folder")


def test_v_prediction_trains(tmp_path):
    backbone = ControlNetLDM(preset="tiny", prediction_type="v_prediction")
    summary = backbone.fit(
        tiny_samples(), SemanticMapBuilder(), **{**RUN, "steps": 2, "cache_latents": True}
    )
    assert np.isfinite(summary["final_loss"])
    options = GenerationOptions(num_inference_steps=2)
    assert backbone.generate([SemanticMapBuilder().build(tiny_samples(1)[0])], options).shape == (
        1,
        16,
        16,
        3,
    )


def _loss_inputs(prediction_type: str):
    from htd_plugins.backbones.ldm.sampling import training_scheduler

    scheduler = training_scheduler(1000, "scaled_linear", prediction_type)
    latents = torch.randn(6, 4, 4, 4, generator=torch.Generator().manual_seed(0))

    def denoiser(noisy, t, spatial, tokens, keep):  # a fixed guess: the loss is its error
        return noisy * 0.5

    return scheduler, latents, denoiser


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weighting_matches_its_formula(prediction_type):
    from diffusers.training_utils import compute_snr

    from htd_plugins.backbones.ldm.training import diffusion_loss

    scheduler, latents, denoiser = _loss_inputs(prediction_type)

    def loss(gamma):
        gen = torch.Generator().manual_seed(3)
        return float(diffusion_loss(denoiser, scheduler, latents, None, None, gen, 0.0, gamma))

    # the same draws as diffusion_loss makes (noise, timesteps), to weigh by hand
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, 1000, (6,), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t)
    v = prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, t) if v else noise
    per_sample = ((noisy * 0.5 - target) ** 2).mean(dim=(1, 2, 3))
    snr = compute_snr(scheduler, t)
    gamma = 1.0
    weight = torch.clamp(snr, max=gamma) / (snr + 1 if v else snr)
    assert loss(gamma) == pytest.approx(float((per_sample * weight).mean()), rel=1e-5)
    assert loss(None) == pytest.approx(float(per_sample.mean()), rel=1e-5)
    assert loss(gamma) != pytest.approx(loss(None), rel=1e-3)  # the weighting changes it
    if not v:  # a gamma above every SNR leaves epsilon's loss unweighted
        assert loss(float(snr.max()) * 2) == pytest.approx(loss(None), rel=1e-5)


def test_snr_gamma_trains_and_is_part_of_the_trajectory(tmp_path):
    assert "snr_gamma" not in TrainOptions().trajectory_config()  # old checkpoints still resume
    assert TrainOptions(snr_gamma=5.0).trajectory_config()["snr_gamma"] == 5.0
    with pytest.raises(InputError, match="snr_gamma"):
        TrainOptions(snr_gamma=0.0)
    backbone = ControlNetLDM(preset="tiny")
    summary = backbone.fit(
        tiny_samples(), SemanticMapBuilder(), **{**RUN, "steps": 2, "snr_gamma": 5.0}
    )
    assert np.isfinite(summary["final_loss"])
