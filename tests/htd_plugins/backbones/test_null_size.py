"""Unconditional generation keeps each layout's size (found by the docs test: `htd generate
--masks my_masks/ --unconditional` with masks larger than the model's patches)."""

from __future__ import annotations

from htd_core import Pipeline
from htd_core.testing import synthetic_sample


def test_unconditional_images_match_their_layouts(trained_controlnet):
    backbone, builder, _, _ = trained_controlnet  # a tiny model: 16 px patches
    pipe = Pipeline(condition_builders=builder, backbone=backbone)
    layout = synthetic_sample(32, seed=1)
    layout.image = None  # a mask only
    out = pipe.generate([layout], seed=0, unconditional=True, num_inference_steps=1)[0]
    assert out.image.shape == (32, 32, 3) and out.mask.shape == (32, 32)
