"""Sample images in TensorBoard while the denoiser trains (``TrainOptions.sample_every``).

Every ``sample_every`` optimizer steps (and at the last step) the model generates images from
one fixed set of conditions with one fixed set of initial noises, so the pictures of
successive steps differ only by what the model learnt. Logged under ``samples/generated``
(one image per condition, in a row); ``samples/real`` and ``samples/map`` (the training
patches the conditions were built from and their masks in class colours) are logged once,
at the first call, to compare against.

The conditions are built from ``sample_count`` training samples spread evenly over the
training set, centre-cropped to the model's size, by the fit's condition builder with seeds
``seed + i``; the noise of image ``i`` is ``torch.Generator().manual_seed(seed + i)``, as in
:meth:`htd_core.Backbone.generate`. Sampling uses the current weights (not the EMA), DDIM with
25 steps, guidance 2 when the model trains a null condition (else 1), inside a forked torch
RNG and in eval mode, so logging changes nothing of the training run (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from htd_core.generation import GenerationOptions
from htd_core.interfaces import ConditionBuilder
from htd_core.types import TissueSample

#: TensorBoard tags.
GENERATED, REAL, MAP = "samples/generated", "samples/real", "samples/map"


class SampleImages:
    """A training callback (``f(step, loss, denoiser)``) logging generated images.

    Args:
        backbone: the latent diffusion backbone being fitted (its ``generate`` is used, so
            the images are made exactly as after training).
        samples: the training samples (the conditions come from ``count`` of them).
        builder: the fit's condition builder.
        accelerator: the fit's ``Accelerator``, whose TensorBoard tracker receives the images.
        every: log every ``every`` optimizer steps (>= 1).
        last_step: the run's final step, logged too.
        count: images per log (>= 1).
        seed: seed of the conditions and of the noise.
    """

    def __init__(
        self,
        backbone: Any,
        samples: Sequence[TissueSample],
        builder: ConditionBuilder,
        accelerator: Any,
        *,
        every: int,
        last_step: int,
        count: int = 4,
        seed: int = 0,
    ) -> None:
        from htd_plugins.backbones.ldm.trainer import center_crop

        size = backbone.image_size
        picks = np.unique(np.linspace(0, len(samples) - 1, min(count, len(samples))).round())
        chosen = [center_crop(samples[int(i)], size) for i in picks]
        self.conditions = [builder.build(s, seed=seed + i) for i, s in enumerate(chosen)]
        self.real = np.stack([s.image for s in chosen])
        self.maps = np.stack([s.class_map.colorize(s.mask) for s in chosen])
        guidance = 2.0 if backbone.config.condition_dropout > 0 else 1.0
        self.options = GenerationOptions(
            guidance_scale=guidance, num_inference_steps=25, batch_size=len(chosen), seed=seed
        )
        self.backbone, self.accelerator = backbone, accelerator
        self.every, self.last_step, self.logged = every, last_step, 0

    def __call__(self, step: int, loss: float, denoiser: torch.nn.Module) -> None:
        if step % self.every and step != self.last_step:
            return
        if not self.accelerator.is_main_process:
            return
        writer = self.accelerator.get_tracker("tensorboard", unwrap=True)
        if not self.logged:
            writer.add_images(REAL, self.real, step, dataformats="NHWC")
            writer.add_images(MAP, self.maps, step, dataformats="NHWC")
        writer.add_images(GENERATED, self.generate(denoiser), step, dataformats="NHWC")
        writer.flush()
        self.logged += 1

    def generate(self, denoiser: torch.nn.Module) -> np.ndarray:
        """N x H x W x 3 uint8 from the fixed conditions and noise, leaving the training
        state as it was (torch's global RNG, train mode)."""
        was_training = denoiser.training
        denoiser.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                return self.backbone.generate(self.conditions, self.options)
        finally:
            denoiser.train(was_training)
