"""Sample images in TensorBoard (``sample_every``): logged at the chosen steps from fixed
conditions and noise, and without any effect on the trained weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from htd_core.errors import InputError
from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
from htd_plugins.backbones.ldm.sample_images import GENERATED, MAP, REAL, SampleImages
from htd_plugins.backbones.ldm.training import TrainOptions
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

from .conftest import tiny_samples

RUN = {"steps": 5, "vae_steps": 2, "batch_size": 2, "progress": False, "tensorboard": True,
       "checkpoint_every": 100}  # fmt: skip


def logged_images(run) -> dict[str, list[tuple[int, np.ndarray]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (run / "logs").rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    return {
        tag: [
            (e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string))))
            for e in acc.Images(tag)
        ]  # fmt: skip
        for tag in acc.Tags()["images"]
    }


def test_sample_images_logged_and_training_unchanged(tmp_path):
    samples, builder = tiny_samples(6), SemanticMapBuilder()
    plain = ControlNetLDM(preset="tiny")
    plain.fit(samples, builder, output_dir=str(tmp_path / "plain"), **RUN)
    logged = ControlNetLDM(preset="tiny")
    logged.fit(samples, builder, output_dir=str(tmp_path / "logged"), sample_every=2,
               sample_count=3, **RUN)  # fmt: skip
    for a, b in zip(plain.denoiser.state_dict().values(), logged.denoiser.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)  # logging samples changes nothing of the training run
    assert not any(t.startswith("samples/") for t in logged_images(tmp_path / "plain"))
    images = logged_images(tmp_path / "logged")
    assert [s for s, _ in images[GENERATED]] == [2, 4, 5]  # every 2 steps and the last
    assert [s for s, _ in images[REAL]] == [2] and [s for s, _ in images[MAP]] == [2]
    for tag in (GENERATED, REAL, MAP):
        for _, grid in images[tag]:  # 3 images of 16 px in a row
            assert grid.shape[:2] == (16, 48) and grid.std() > 0
    first, last = images[GENERATED][0][1], images[GENERATED][-1][1]
    assert not np.array_equal(first, last)  # the model moved between steps 2 and 5
    real = np.concatenate([s.image[:16, :16] for s in (samples[0], samples[2], samples[5])], 1)
    assert np.array_equal(images[REAL][0][1][..., :3], real)  # spread over the training set


def test_fixed_conditions_and_noise(trained_controlnet):
    backbone, builder, samples, _ = trained_controlnet

    class Tracker:
        is_main_process = True

    logger = SampleImages(backbone, samples, builder, Tracker(), every=1, last_step=1, count=2)
    backbone.denoiser.train()
    a, b = logger.generate(backbone.denoiser), logger.generate(backbone.denoiser)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and backbone.denoiser.training  # same images; mode restored
    state = torch.random.get_rng_state()
    logger.generate(backbone.denoiser)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    other = SampleImages(backbone, samples, builder, Tracker(), every=1, last_step=1, count=2,
                         seed=7)  # fmt: skip
    assert not np.array_equal(other.generate(backbone.denoiser), a)


@pytest.mark.parametrize("options", [{"sample_every": -1}, {"sample_count": 0}])
def test_bad_sample_options(options):
    with pytest.raises(InputError, match="fit option sample_"):
        TrainOptions(**options)
