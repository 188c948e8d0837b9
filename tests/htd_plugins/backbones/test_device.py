"""Training honours the backbone's ``device`` option, and leaves a model that generates as
the saved and reloaded one does (no mixed-precision wrapper left on the denoiser)."""

from __future__ import annotations

import accelerate
import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

from htd_core.generation import GenerationOptions
from htd_core.options import override
from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
from htd_plugins.backbones.ldm import loop
from htd_plugins.backbones.ldm.loop import make_accelerator
from htd_plugins.backbones.ldm.training import TrainOptions
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

from .conftest import TINY_FIT, tiny_samples

GEN = GenerationOptions(num_inference_steps=2)


@pytest.fixture
def fresh_accelerate():
    """accelerate's process-wide state, empty before and after the test."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_cpu_device_trains_on_cpu_where_cuda_is_present(monkeypatch, fresh_accelerate):
    made: list[dict] = []

    class Spy(accelerate.Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append({**kwargs, "device": self.device, "precision": self.mixed_precision})

    def with_cuda(*args):  # CUDA "present" while the accelerator is made (torch's optimisers
        with monkeypatch.context() as m:  # would try real CUDA calls were it faked for longer)
            m.setattr(torch.cuda, "is_available", lambda: True)
            return make(*args)

    make = loop.make_accelerator
    monkeypatch.setattr(accelerate, "Accelerator", Spy)
    monkeypatch.setattr(loop, "make_accelerator", with_cuda)
    backbone = ControlNetLDM(preset="tiny", device="cpu")
    builder = SemanticMapBuilder()
    backbone.fit(tiny_samples(), builder, **{**TINY_FIT, "steps": 1, "vae_steps": 1})
    assert len(made) == 1
    assert made[0]["cpu"] is True and made[0]["device"].type == "cpu"
    assert made[0]["precision"] == "no"  # "auto" on a CPU device: no bf16 autocast
    for part in (backbone.denoiser, backbone.autoencoder.module):
        assert {p.device.type for p in part.parameters()} == {"cpu"}
    assert backbone.autoencoder.device.type == "cpu"
    assert backbone.generate([builder.build(tiny_samples(1)[0])], GEN).shape == (1, 16, 16, 3)


def test_a_later_fit_may_change_precision_in_one_session(fresh_accelerate):
    first = make_accelerator(TrainOptions(), torch.device("cpu"))
    assert first.mixed_precision == "no"
    bf16 = override(TrainOptions(), {"mixed_precision": "bf16"}, "fit")
    second = make_accelerator(bf16, torch.device("cpu"))
    assert second.mixed_precision == "bf16" and second.device.type == "cpu"


def test_bf16_fit_generates_as_the_reloaded_model(tmp_path, fresh_accelerate):
    samples, builder = tiny_samples(), SemanticMapBuilder()
    backbone = ControlNetLDM(preset="tiny", device="cpu")
    summary = backbone.fit(
        samples, builder, output_dir=str(tmp_path), mixed_precision="bf16", **TINY_FIT
    )
    denoiser = backbone.denoiser
    # accelerate wraps forward in autocast + convert-to-fp32 (functools.wraps: __wrapped__)
    # and keeps the original in _original_forward; both must be gone after fit
    assert "_original_forward" not in vars(denoiser)
    assert not hasattr(denoiser.forward, "__wrapped__")
    assert denoiser.forward.__func__ is type(denoiser).forward
    conditions = [builder.build(s) for s in samples[:2]]
    here = backbone.generate(conditions, GEN.replace(seed=3))
    reloaded = ControlNetLDM.load(summary["model_dir"], device="cpu")
    np.testing.assert_array_equal(here, reloaded.generate(conditions, GEN.replace(seed=3)))
