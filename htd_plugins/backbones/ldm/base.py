"""What ``controlnet_ldm`` and ``concat_ldm`` share: a latent diffusion backbone whose
subclasses differ only in how the spatial condition enters the UNet.

Heavy libraries (diffusers, accelerate) are imported inside methods.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from htd_core.errors import InputError
from htd_core.interfaces import Backbone, ConditionBuilder
from htd_core.types import ClassMap, Condition, TissueSample


class Denoiser(nn.Module):
    """UNet + condition path + token encoder; ``forward(noisy, t, spatial, tokens, keep)``.

    Rows where ``keep`` is False see the null condition (zero spatial condition, null token):
    the condition dropout of classifier-free guidance.
    """

    def __init__(self, parts: dict[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    def forward(self, noisy, t, spatial, tokens, keep):
        states = self.parts["token_encoder"](tokens, noisy.shape[0], keep)
        if spatial is not None:
            spatial = spatial * keep.view(-1, 1, 1, 1).to(spatial.dtype)
        return self.inject(noisy, t, spatial, states)

    @abstractmethod
    def inject(self, noisy, t, spatial, states) -> torch.Tensor:
        """The UNet's prediction with the spatial condition injected (None: no channels)."""


class LatentDiffusionBackbone(Backbone):
    """A KL autoencoder + a UNet conditioned on the spatial condition and tokens.

    Args:
        preset: model size, ``tiny`` | ``small`` | ``paper`` (see ``presets.py``).
        vae: local diffusers folder (or hub id when online) of a pretrained autoencoder;
            None trains one on the training patches at the start of ``fit``.
        image_size: training patch side (default: the preset's); larger samples are cropped.
        prediction_type: ``epsilon`` or ``v_prediction``.
        condition_dropout: probability of training a sample with the null condition (CFG).
        guidance_scale: default classifier-free guidance at sampling (1: none).
        scheduler: default sampler, ``ddim`` or ``dpmsolver++``.
        num_inference_steps: default sampling steps.
        batch_size: generation batch size.
        scaling_factor: latent scale; None measures 1/std of the training latents.
        device: ``auto`` (GPU when present), ``cpu``, ``cuda``...
    """

    name = "latent_diffusion"
    #: Folder names of the trained parts besides ``vae`` (set by subclasses).
    part_names: tuple[str, ...] = ("unet", "token_encoder")

    def __init__(
        self,
        preset: str = "small",
        vae: str | None = None,
        image_size: int | None = None,
        prediction_type: str = "epsilon",
        condition_dropout: float = 0.1,
        guidance_scale: float = 2.0,
        scheduler: str = "ddim",
        num_inference_steps: int = 25,
        batch_size: int = 16,
        scaling_factor: float | None = None,
        device: str = "auto",
    ) -> None:
        from htd_plugins.backbones.ldm.presets import get_preset
        from htd_plugins.backbones.ldm.sampling import SCHEDULERS, checked_guidance

        self.preset = get_preset(preset)
        self.image_size = int(image_size or self.preset.image_size)
        if self.image_size % self.preset.size_multiple:
            raise InputError(
                f"{self.name} image_size={image_size} must be a multiple of {self.preset.size_multiple}"
            )
        if prediction_type not in ("epsilon", "v_prediction"):
            raise InputError(
                f"{self.name} prediction_type={prediction_type!r}: use epsilon or v_prediction"
            )
        if not 0 <= condition_dropout < 1:
            raise InputError(f"{self.name} condition_dropout={condition_dropout} must be in [0, 1)")
        if scheduler not in SCHEDULERS:
            raise InputError(
                f"{self.name} scheduler={scheduler!r}: use one of {', '.join(SCHEDULERS)}"
            )
        if num_inference_steps < 1 or batch_size < 1 or guidance_scale < 0:
            raise InputError(
                f"{self.name}: num_inference_steps and batch_size must be >= 1, guidance_scale >= 0"
            )
        guidance_scale = checked_guidance(self.name, guidance_scale, condition_dropout)
        self.options = {
            "preset": preset, "vae": None if vae is None else str(vae), "image_size": self.image_size,
            "prediction_type": prediction_type, "condition_dropout": condition_dropout,
            "guidance_scale": guidance_scale, "scheduler": scheduler,
            "num_inference_steps": num_inference_steps, "batch_size": batch_size,
            "scaling_factor": scaling_factor, "device": device,
        }  # fmt: skip
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if device == "auto" else device)
        self.vae: Any = None
        self.denoiser: Denoiser | None = None
        self.channels: tuple[str, ...] = ()
        self.token_names: tuple[str, ...] = ()
        self.token_dim = 0
        self.class_map: ClassMap | None = None
        self.history: list[dict[str, Any]] = []
        #: um/px of the training patches (median of their ``meta['mpp']``; None when unknown).
        self.mpp: float | None = None

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def build_parts(
        self, num_channels: int, token_dim: int, latent_channels: int
    ) -> dict[str, nn.Module]:
        """Fresh trainable parts named as ``part_names``."""

    @abstractmethod
    def make_denoiser(self, parts: dict[str, nn.Module]) -> Denoiser:
        """Wrap the parts."""

    @abstractmethod
    def part_class(self, name: str) -> type:
        """The diffusers class that loads part ``name``."""

    # -- training -------------------------------------------------------------------------
    def fit(
        self, samples: Iterable[TissueSample], builder: ConditionBuilder, **options: Any
    ) -> dict[str, Any]:
        """Train on ``samples`` with conditions from ``builder``; see ``TrainOptions``.

        ``max_minutes`` bounds the whole call: reading the samples, the autoencoder (its share:
        ``TrainOptions.vae_seconds``) and the diffusion training, which gets what is left.
        Training runs on the backbone's ``device`` (``cpu`` stays on the CPU where CUDA is
        present), and the trained denoiser and autoencoder are left there, unwrapped from
        accelerate's mixed-precision autocast: generation right after ``fit`` equals generation
        by the saved and reloaded model.
        """
        from htd_plugins.backbones.ldm.augment import Augmentation
        from htd_plugins.backbones.ldm.autoencoder import prepare_vae
        from htd_plugins.backbones.ldm.sampling import training_scheduler
        from htd_plugins.backbones.ldm.trainer import (
            BatchSource,
            fingerprint,
            make_accelerator,
            prepare_samples,
            step_transform,
            train_denoiser,
        )
        from htd_plugins.backbones.ldm.training import Clock, TrainOptions

        opts = TrainOptions.from_options(options, self.preset.train)
        clock = Clock.minutes(opts.max_minutes)  # the whole fit's wall-time bound
        given = opts.augment
        augment = given if isinstance(given, Augmentation) else Augmentation(**(given or {}))
        data = prepare_samples(samples, self.image_size, opts.max_samples)
        for_step = step_transform(samples)  # e.g. the curriculum's granularity at step t
        class_map = data[0].class_map
        channels = tuple(builder.channels(class_map))
        token_names = tuple(builder.token_names(class_map))
        token_dim = int(builder.token_dim or 0) if token_names else 0
        config = {
            **{k: v for k, v in self.options.items() if k not in ("device", "batch_size", "guidance_scale",
                                                               "scheduler", "num_inference_steps")},
            "backbone": self.name, "channels": list(channels), "token_names": list(token_names),
            "token_dim": token_dim, "num_samples": len(data), "data": fingerprint(data),
            "for_step": None if for_step is None else for_step.__qualname__,
            **{k: v for k, v in opts.trajectory_config().items() if k != "augment"},
            "augment": vars(augment),
        }  # fmt: skip
        accelerator = make_accelerator(opts, self.device)
        images = np.stack([d.image[: self.image_size, : self.image_size] for d in data])
        vae_summary = prepare_vae(
            self, images, opts, accelerator.device, accelerator.is_main_process,
            clock=clock,
        )  # fmt: skip
        if self.denoiser is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(opts.seed)
                self.denoiser = self.make_denoiser(
                    self.build_parts(len(channels), token_dim, self.vae.config.latent_channels)
                )
        elif (channels, token_names) != (self.channels, self.token_names):
            raise InputError(
                f"{self.name} was trained on channels {list(self.channels)}; cannot continue with "
                f"{list(channels)}: create a new backbone"
            )
        self.channels, self.token_names, self.token_dim = channels, token_names, token_dim
        self.class_map = class_map
        self.mpp = training_mpp(data)
        noise = training_scheduler(1000, "scaled_linear", self.options["prediction_type"])
        self.denoiser.to(accelerator.device)
        source = BatchSource(
            data, builder, self.vae, augment, batch_size=opts.batch_size, image_size=self.image_size,
            seed=opts.seed, cache=opts.cache_latents, device=accelerator.device, for_step=for_step,
        )  # fmt: skip
        summary, ema = train_denoiser(
            self.denoiser, noise, source, opts, accelerator=accelerator, learning_rate=opts.learning_rate,
            warmup_steps=opts.warmup_steps or 0, condition_dropout=self.options["condition_dropout"],
            config=config, clock=clock,
        )  # fmt: skip
        # without accelerate's autocast wrapper of forward: generation now runs as after a reload
        self.denoiser = accelerator.unwrap_model(self.denoiser, keep_fp32_wrapper=False)
        if ema is not None:
            ema.copy_to(self.denoiser)
        self.denoiser.to(self.device).eval()
        self.vae.to(self.device)
        summary = {**summary, "vae": vae_summary, "backbone": self.name, "preset": self.preset.name}
        self.history.append({k: v for k, v in summary.items() if k != "last_checkpoint"})
        if opts.output_dir and accelerator.is_main_process:
            summary["model_dir"] = str(Path(opts.output_dir) / "model")
            self.save(summary["model_dir"])
        return summary

    # -- generation -----------------------------------------------------------------------
    def generate(
        self,
        conditions: Sequence[Condition],
        *,
        seed: int = 0,
        guidance_scale: float | None = None,
        scheduler: str | None = None,
        num_inference_steps: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """One uint8 image per condition; image ``i`` depends only on ``seed + i`` (its initial
        noise; not on the batching, up to float rounding), so a generation can resume part-way."""
        from htd_plugins.backbones.ldm.autoencoder import to_uint8
        from htd_plugins.backbones.ldm.sampling import (
            checked_guidance,
            collate_for_generation,
            decode,
            make_scheduler,
            sample_latents,
        )

        self._require_model()
        conditions = list(conditions)
        if not conditions:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        o = self.options
        sched = make_scheduler(scheduler or o["scheduler"], self.noise_config)
        g = o["guidance_scale"] if guidance_scale is None else guidance_scale
        g = checked_guidance(self.name, g, o["condition_dropout"], asked=guidance_scale is not None)
        steps, bs = num_inference_steps or o["num_inference_steps"], batch_size or o["batch_size"]
        spatial, tokens, keep, size = collate_for_generation(
            conditions, self.channels, self.token_names, self.token_dim, self.image_size,
            self.preset.size_multiple,
        )  # fmt: skip
        f = self.preset.vae_factor
        shape = (self.vae.config.latent_channels, size[0] // f, size[1] // f)
        out = []
        for start in range(0, len(conditions), bs):
            sl = slice(start, start + bs)
            sp = None if spatial is None else spatial[sl].to(self.device)
            tk = None if tokens is None else tokens[sl].to(self.device)

            end = min(start + bs, len(conditions))
            gens = [torch.Generator().manual_seed(seed + i) for i in range(start, end)]
            predict = functools.partial(self._predict, spatial=sp, tokens=tk)
            latents = sample_latents(
                predict, sched, shape=shape, generators=gens, num_inference_steps=steps,
                guidance_scale=g, device=self.device, keep=keep[sl],
            )  # fmt: skip
            out.append(to_uint8(decode(self.vae, latents)))
        return np.concatenate(out)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Images through the autoencoder (posterior mean, decoded; same shape)."""
        from htd_plugins.backbones.ldm.autoencoder import reconstruct_images

        self._require_model()
        return reconstruct_images(self.vae, images, self.preset.vae_factor)

    @torch.no_grad()
    def predict_noise(
        self,
        latents: torch.Tensor,
        t: Any,
        conditions: Sequence[Condition],
        *,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """One guided model evaluation, for callers that run their own sampling loop (slide
        synthesis denoises overlapping windows of one latent canvas).

        Args:
            latents: float B x C x h x w noisy latents after ``scheduler.scale_model_input``.
            t: the scheduler's timestep.
            conditions: one per row, each of ``h * vae_factor`` x ``w * vae_factor`` px.
            guidance_scale: as in :meth:`generate` (default: the model's).

        Returns:
            The model output (epsilon or v, as trained), B x C x h x w on ``self.device``.
        """
        from htd_plugins.backbones.ldm.sampling import (
            checked_guidance,
            collate_for_generation,
            guided_output,
        )

        self._require_model()
        g = self.options["guidance_scale"] if guidance_scale is None else guidance_scale
        g = checked_guidance(
            self.name, g, self.options["condition_dropout"], asked=guidance_scale is not None
        )
        spatial, tokens, keep, _ = collate_for_generation(
            list(conditions), self.channels, self.token_names, self.token_dim, self.image_size,
            self.preset.size_multiple,
        )  # fmt: skip
        predict = functools.partial(
            self._predict,
            spatial=None if spatial is None else spatial.to(self.device),
            tokens=None if tokens is None else tokens.to(self.device),
        )
        return guided_output(predict, latents.to(self.device), t, keep, g)

    def _predict(self, x, t, keep, *, spatial, tokens):
        """Denoiser output for latents ``x``; the condition rows are repeated when guidance
        stacks the null and the conditional branch in one batch."""
        rows = spatial if spatial is not None else tokens
        if rows is not None and x.shape[0] != rows.shape[0]:
            reps = x.shape[0] // rows.shape[0]
            spatial = None if spatial is None else spatial.repeat(reps, 1, 1, 1)
            tokens = None if tokens is None else tokens.repeat(reps, 1, 1)
        return self.denoiser(x, t, spatial, tokens, keep)

    @functools.cached_property
    def noise_config(self) -> dict[str, Any]:
        from htd_plugins.backbones.ldm.sampling import training_scheduler

        return dict(
            training_scheduler(1000, "scaled_linear", self.options["prediction_type"]).config
        )

    def _require_model(self) -> None:
        if self.denoiser is None or self.vae is None:
            raise InputError(
                f"{self.name} has no weights yet: call fit() or load a saved model folder"
            )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``vae/``, one folder per part (diffusers ``save_pretrained``), ``scheduler/``
        and ``htd_config.json`` to ``path``, replacing it atomically."""
        from htd_plugins.backbones.ldm.model_folder import save_model

        self._require_model()
        save_model(self, path)

    def write_extra(self, folder: Path) -> None:
        """Subclasses add files (e.g. a diffusers ``model_index.json``)."""

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> LatentDiffusionBackbone:
        """Read a folder written by :meth:`save` (each part with diffusers' ``from_pretrained``)."""
        from htd_plugins.backbones.ldm.model_folder import load_model

        return load_model(cls, path, device)


def training_mpp(samples: Sequence[TissueSample]) -> float | None:
    """Median ``meta['mpp']`` of the training samples (None when none says it)."""
    values = [float(s.meta["mpp"]) for s in samples if s.meta.get("mpp") not in (None, "")]
    return float(np.median(values)) if values else None
