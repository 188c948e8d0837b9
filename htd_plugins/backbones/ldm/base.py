"""What ``controlnet_ldm`` and ``concat_ldm`` share: a latent diffusion backbone
(:class:`htd_core.LatentBackbone`) whose subclasses differ only in how the spatial condition
enters the UNet.

Heavy libraries (diffusers, accelerate) are imported inside methods.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from htd_core.errors import InputError
from htd_core.generation import GenerationOptions
from htd_core.interfaces import ConditionBuilder, LatentBackbone
from htd_core.options import make_options
from htd_core.threads import check_device
from htd_core.types import ClassMap, Condition, TissueSample
from htd_plugins.backbones.ldm.options import MOVED, LatentDiffusionOptions


class Denoiser(nn.Module):
    """UNet + condition path + token encoder; ``forward(noisy, t, spatial, tokens, keep)``.

    Rows where ``keep`` is False see the null condition (zero spatial condition, null token):
    the condition dropout of classifier-free guidance.
    """

    def __init__(self, parts: dict[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    def forward(self, noisy, t, spatial, tokens, keep, *, masked: bool = False):
        """``masked``: ``spatial`` is already zero in the rows where ``keep`` is False."""
        states = self.parts["token_encoder"](tokens, noisy.shape[0], keep)
        if spatial is not None and not masked:
            spatial = spatial * keep.view(-1, 1, 1, 1).to(spatial.dtype)
        if spatial is not None and "class_embedding" in self.parts:  # class index -> embedding
            spatial = self.parts["class_embedding"](spatial)
        return self.inject(noisy, t, spatial, states)

    @abstractmethod
    def inject(self, noisy, t, spatial, states) -> torch.Tensor:
        """The UNet's prediction with the spatial condition injected (None: no channels)."""


class LatentDiffusionBackbone(LatentBackbone):
    """A KL autoencoder + a UNet conditioned on the spatial condition and tokens.

    Args:
        options: a :class:`~.options.LatentDiffusionOptions` (or the subclass's ``Options``);
            keywords override its fields (``ControlNetLDM(preset="tiny")``). Generation
            settings are not options: they are :class:`htd_core.GenerationOptions` per call.

    Raises:
        InputError: an unknown or invalid option (names it; a former option says where it went).
    """

    name = "latent_diffusion"
    Options: type[LatentDiffusionOptions] = LatentDiffusionOptions
    #: Folder names of the trained parts besides the autoencoder (set by subclasses).
    part_names: tuple[str, ...] = ("unet", "token_encoder")

    def __init__(self, options: LatentDiffusionOptions | None = None, **overrides: Any) -> None:
        from htd_plugins.backbones.ldm.presets import get_preset

        given = {**(options.to_dict() if options is not None else {}), **overrides}
        self.config = make_options(self.Options, given, self.name, moved=MOVED)
        self.options = self.config.to_dict()
        self.preset = get_preset(self.config.preset)
        self.image_size = int(self.config.image_size or self.preset.image_size)
        device = check_device(self.config.device, f"{self.name} device")
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        self.autoencoder = None
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

    # -- the latent backbone interface ----------------------------------------------------
    @property
    def size_multiple(self) -> int:
        factor = self.autoencoder.factor if self.autoencoder is not None else self.preset.vae_factor
        return factor * self.preset.unet_factor

    def check_layout_size(self, height: int, width: int, what: str = "layout") -> None:
        """Sides must be multiples of :attr:`size_multiple` (the autoencoder's and UNet's
        downsampling).

        Raises:
            InputError: naming ``what``, its size, and the sizes to crop or pad it to.
        """
        m = self.size_multiple
        if height % m or width % m:
            down = f"{max(m, width // m * m)}x{max(m, height // m * m)}"
            up = f"{-(-width // m) * m}x{-(-height // m) * m}"
            raise InputError(
                f"{what} is {width}x{height} px, but this model generates sides that are "
                f"multiples of {m} px: crop it to {down} or pad it to {up} px"
            )

    def fit(
        self, samples: Iterable[TissueSample], builder: ConditionBuilder, **options: Any
    ) -> dict[str, Any]:
        """Train on ``samples`` with conditions from ``builder``; see ``TrainOptions`` and
        :func:`.fitting.fit_latent_diffusion`."""
        from htd_plugins.backbones.ldm.fitting import fit_latent_diffusion

        return fit_latent_diffusion(self, samples, builder, options)

    def train_autoencoder(
        self,
        images: np.ndarray,
        *,
        checkpoint: str | Path | None = None,
        max_minutes: float | None = None,
        progress: bool = True,
        clock: Any = None,
        **options: Any,
    ) -> dict[str, Any]:
        """A new KL autoencoder of the preset's architecture, trained on ``images`` (uint8
        N x H x W x 3) with the preset's :class:`~.autoencoder_training.AutoencoderTrainOptions`
        overridden by ``options``; it becomes :attr:`autoencoder`, on :attr:`device`. When the
        ``autoencoder`` option names TAEF2 (:mod:`.taef2`), its decoder is fine-tuned instead
        (encoder frozen) from the pretrained weights.

        ``clock`` (a :class:`~.progress.Clock`, for ``fit``'s share of its bound) replaces
        ``max_minutes``. A ``scaling_factor`` option of the backbone replaces the measured one.
        """
        from htd_core.options import override
        from htd_plugins.backbones.ldm.autoencoder_training import train_autoencoder_loop
        from htd_plugins.backbones.ldm.autoencoders import pretrained_to_finetune
        from htd_plugins.backbones.ldm.kl import KLAutoencoder
        from htd_plugins.backbones.ldm.progress import BoundedProgress, Clock

        opts = override(self.preset.autoencoder_train, options, f"{self.name} autoencoder")
        clock = clock if clock is not None else Clock.minutes(max_minutes)
        ae = pretrained_to_finetune(self.config.autoencoder, images) or KLAutoencoder.build(
            self.preset.vae, self.image_size, seed=opts.seed
        )
        bar = BoundedProgress("autoencoder", opts.steps, clock, disable=not progress)
        summary = train_autoencoder_loop(
            ae, images, opts, device=self.device, clock=clock, checkpoint=checkpoint,
            progress=lambda step, loss: bar.update(step + 1, loss=f"{loss:.4f}"),
        )  # fmt: skip
        bar.close()
        if self.config.scaling_factor:
            ae.scaling_factor = self.config.scaling_factor
        self.autoencoder = ae.frozen(self.device)
        return {**summary, "scaling_factor": ae.scaling_factor, "options": opts.to_dict()}

    def sampling_scheduler(self, name: str) -> Any:
        from htd_plugins.backbones.ldm.sampling import make_scheduler

        return make_scheduler(name, self.noise_config)

    def check_generation(
        self, options: GenerationOptions, asked: frozenset[str] = frozenset()
    ) -> GenerationOptions:
        """Known scheduler; guidance needs a trained null branch (``condition_dropout`` > 0):
        asked for on a model without one it is an error, as a default it falls back to 1
        with a warning."""
        from htd_plugins.backbones.ldm.sampling import SCHEDULERS

        if options.scheduler not in SCHEDULERS:
            raise InputError(
                f"{self.name}: scheduler={options.scheduler!r}: use one of {', '.join(SCHEDULERS)}"
            )
        if options.guidance_scale <= 1 or self.config.condition_dropout > 0:
            return options
        if "guidance_scale" in asked:
            raise InputError(
                f"{self.name}: guidance_scale={options.guidance_scale} needs a trained null "
                "condition, but this model was trained with condition_dropout=0 (its null "
                "branch never learned anything): ask for guidance_scale=1 (no guidance), or "
                "retrain with condition_dropout > 0"
            )
        warnings.warn(
            f"{self.name}: guidance_scale={options.guidance_scale} extrapolates from the null "
            "condition, which condition_dropout=0 never trains; using guidance_scale=1 (no "
            "guidance). Train with condition_dropout > 0 (e.g. 0.1) to use guidance",
            UserWarning,
            stacklevel=3,
        )
        return options.replace(guidance_scale=1.0)

    @torch.inference_mode()  # no autograd bookkeeping at all (about 1-2% at small batches)
    def generate(self, conditions: Sequence[Condition], options: GenerationOptions) -> np.ndarray:
        """One uint8 image per condition, sampled exactly as ``options`` say (resolved by the
        caller: this method reads no default); image ``i`` depends only on
        ``options.seed + i`` (its initial noise; not on the batching, up to float rounding)."""
        from htd_plugins.backbones.ldm.sampling import sample_latents

        self._require_model()
        conditions = list(conditions)
        if not conditions:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        sched = self.sampling_scheduler(options.scheduler)
        spatial, tokens, keep, size = self._collate(conditions)
        shape = self.latent_shape(*size)
        out, bs = [], options.batch_size
        for start in range(0, len(conditions), bs):
            end = min(start + bs, len(conditions))
            sp = None if spatial is None else spatial[start:end].to(self.device)
            tk = None if tokens is None else tokens[start:end].to(self.device)
            gens = [torch.Generator().manual_seed(options.seed + i) for i in range(start, end)]
            latents = sample_latents(
                functools.partial(self._predict, spatial=sp, tokens=tk, memo={}), sched, shape=shape,
                generators=gens, num_inference_steps=options.num_inference_steps,
                guidance_scale=options.guidance_scale, device=self.device, keep=keep[start:end],
            )  # fmt: skip
            out.append(self.decode(latents))
        return np.concatenate(out)

    @torch.no_grad()
    def predict_noise(
        self,
        latents: torch.Tensor,
        t: Any,
        conditions: Sequence[Condition],
        *,
        guidance_scale: float,
    ) -> torch.Tensor:
        from htd_plugins.backbones.ldm.sampling import guided_output

        self._require_model()
        spatial, tokens, keep, _ = self._collate(list(conditions))
        predict = functools.partial(
            self._predict,
            spatial=None if spatial is None else spatial.to(self.device),
            tokens=None if tokens is None else tokens.to(self.device),
        )
        return guided_output(predict, latents.to(self.device), t, keep, guidance_scale)

    def weights_digest(self) -> str:
        self._require_model()
        h = hashlib.sha256()
        for module in (self.denoiser, self.autoencoder.module):
            for name, tensor in module.state_dict().items():
                h.update(name.encode())
                data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                h.update(data.numpy().tobytes())
        return h.hexdigest()[:16]

    def _collate(self, conditions: list[Condition]) -> Any:
        """Conditions checked against what the model was trained on, stacked
        (:func:`.sampling.collate_for_generation`)."""
        from htd_plugins.backbones.ldm.sampling import collate_for_generation

        return collate_for_generation(conditions, self.channels, self.token_names,
                                      self.token_dim, self.image_size, self.size_multiple)  # fmt: skip

    def _predict(self, x, t, keep, *, spatial, tokens, memo=None):
        """Denoiser output for latents ``x``; the condition rows are repeated when guidance
        stacks the null and the conditional branch in one batch. ``memo`` (a dict for one
        batch's sampling loop, whose ``keep`` is fixed for each row count) keeps the repeated
        and masked spatial condition, made once instead of at every step."""
        rows = spatial if spatial is not None else tokens
        reps = 1 if rows is None else x.shape[0] // rows.shape[0]
        tokens = tokens.repeat(reps, 1, 1) if tokens is not None and reps > 1 else tokens
        if spatial is None or memo is None:
            spatial = spatial.repeat(reps, 1, 1, 1) if spatial is not None and reps > 1 else spatial
            return self.denoiser(x, t, spatial, tokens, keep)
        if x.shape[0] not in memo:
            mask = keep.view(-1, 1, 1, 1).to(spatial.device, spatial.dtype)
            memo[x.shape[0]] = spatial.repeat(reps, 1, 1, 1) * mask
        return self.denoiser(x, t, memo[x.shape[0]], tokens, keep, masked=True)

    @functools.cached_property
    def noise_config(self) -> dict[str, Any]:
        from htd_plugins.backbones.ldm.sampling import training_scheduler

        return dict(training_scheduler(1000, "scaled_linear", self.config.prediction_type).config)

    def _require_model(self) -> None:
        if self.denoiser is None or self.autoencoder is None:
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
