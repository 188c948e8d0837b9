"""The training loop of the latent diffusion backbones, on ``accelerate``.

Every random draw of step ``s`` (which samples, their augmentation and crop seeds, noise,
timesteps, condition dropout) comes from generators seeded by ``(seed, s, micro-batch,
process)``, so the state to resume is only the weights, the optimizer, the EMA and ``s``: an
interrupted run resumed from its last checkpoint ends with the same weights as an
uninterrupted one. One process here; ``accelerate launch`` runs the same loop on several GPUs
or nodes (each process draws its own micro-batches; gradients are averaged by accelerate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from htd_core.errors import HtdError, InputError
from htd_core.training_data import stream_indices  # noqa: F401 - its name here too


class NonFiniteLossError(HtdError):
    """The training loss became NaN or infinite."""


#: The autoencoder's share of ``max_minutes`` when ``vae_max_minutes`` is not given (the demo's
#: split: 2 of 9 minutes; the autoencoder converges far sooner than the denoiser).
VAE_SHARE = 0.2


@dataclass(frozen=True)
class TrainOptions:
    """Options of ``fit`` (``None``: the preset's default). Validated on creation.

    Attributes:
        output_dir: folder of checkpoints, TensorBoard logs, the autoencoder and the final model
            (``None``: train in memory, no checkpoints, no resume).
        steps: optimizer steps in total (a resumed run continues up to this number).
        batch_size: samples per micro-batch and process.
        learning_rate: AdamW peak learning rate, reached linearly over ``warmup_steps``.
        gradient_accumulation_steps: micro-batches per optimizer step.
        ema_decay: maximum decay of the exponential moving average of weights (0: off); the
            saved model holds the EMA weights.
        mixed_precision: ``auto`` (bf16 on a GPU that supports it, else fp16 on GPU, none on
            CPU), ``no``, ``fp16`` or ``bf16``.
        cache_latents: encode each patch (and each of its 8 rotations/flips) once; colour
            augmentation is then skipped, since it cannot be applied to cached latents.
        augment: ``Augmentation`` options (``{"dihedral": ..., "brightness": ..., "hed_sigma": ...}``).
        checkpoint_every: steps between checkpoints (atomic; the last ``keep_checkpoints`` kept).
        resume: continue from the last checkpoint of ``output_dir`` when there is one.
        max_minutes: wall-time bound of the whole ``fit``, autoencoder included: training stops
            (and checkpoints, and saves the model) when it is spent. See :meth:`vae_seconds`
            for the autoencoder's share; the diffusion stage gets what is left.
        vae_steps: steps of autoencoder training when the backbone has no autoencoder yet
            (None: the preset's).
        vae_learning_rate: its learning rate (None: the preset's).
        vae_max_minutes: the autoencoder's share of ``max_minutes`` (or its own bound when
            ``max_minutes`` is None); default :data:`VAE_SHARE` of ``max_minutes``.
        vae_adversarial_weight: weight of the autoencoder's PatchGAN adversarial term (0: off;
            LDM used 0.5), times its adaptive weight (see ``ldm/discriminator.py``).
        vae_adversarial_start: autoencoder step from which the adversarial term and the
            discriminator's updates start.
        vae_perceptual_weight: weight of the autoencoder's perceptual term (LPIPS-style on
            EfficientNet-Lite0 features, ``ldm/perceptual.py``; 0: off).
        snr_gamma: Min-SNR-gamma loss weighting (Hang et al., ICCV 2023, Eq. 7; diffusers'
            ``compute_snr``): each sample's loss is weighted by min(SNR(t), gamma) / SNR(t)
            for epsilon prediction, min(SNR(t), gamma) / (SNR(t) + 1) for v prediction
            (None: unweighted mean squared error; the paper used gamma = 5).
        sample_every: log ``sample_count`` generated images to TensorBoard every this many
            optimizer steps and at the last one (0: off), always from the same conditions and
            noise (:mod:`.sample_images`); needs ``tensorboard`` and ``output_dir``.
        sample_count: images per such log.
        callbacks: callables ``f(step, loss, denoiser)`` run after every optimizer step.
    """

    output_dir: str | None = None
    steps: int = 1000
    batch_size: int | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999
    mixed_precision: str = "auto"
    seed: int = 0
    cache_latents: bool = False
    augment: Any = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = True
    tensorboard: bool = True
    log_every: int = 10
    max_minutes: float | None = None
    max_samples: int | None = None
    vae_steps: int | None = None
    vae_learning_rate: float | None = None
    vae_max_minutes: float | None = None
    vae_adversarial_weight: float = 0.0
    vae_adversarial_start: int = 0
    vae_perceptual_weight: float = 0.0
    snr_gamma: float | None = None
    progress: bool = True
    sample_every: int = 0
    sample_count: int = 4
    callbacks: Sequence[Callable[..., Any]] = ()

    #: Options that do not change the trajectory of a run (may differ on resume).
    RUNTIME = ("output_dir", "steps", "checkpoint_every", "keep_checkpoints", "resume",
               "tensorboard", "log_every", "max_minutes", "progress", "callbacks",
               "vae_max_minutes", "sample_every", "sample_count")  # fmt: skip
    #: Options added after runs were checkpointed: left out of :meth:`trajectory_config` at
    #: their default, so those checkpoints (which lack them) still resume.
    LATER = {"vae_adversarial_weight": 0.0, "vae_adversarial_start": 0,
             "vae_perceptual_weight": 0.0, "snr_gamma": None}  # fmt: skip

    def __post_init__(self) -> None:
        from htd_core.options import check_int, check_number

        for name in ("steps", "gradient_accumulation_steps", "checkpoint_every",
                     "keep_checkpoints", "log_every"):  # fmt: skip
            check_int(getattr(self, name), f"fit option {name}", 1)
        for name in ("batch_size", "warmup_steps", "vae_steps", "max_samples"):
            if getattr(self, name) is not None:  # None: the preset's (never 0)
                check_int(getattr(self, name), f"fit option {name}", int(name != "warmup_steps"))
        check_int(self.seed, "fit option seed", 0)
        check_int(self.sample_every, "fit option sample_every", 0)
        check_int(self.sample_count, "fit option sample_count", 1)
        check_int(self.vae_adversarial_start, "fit option vae_adversarial_start", 0)
        for name in ("weight_decay", "max_grad_norm", "vae_adversarial_weight",
                     "vae_perceptual_weight"):  # fmt: skip
            check_number(getattr(self, name), f"fit option {name}", 0.0)
        for name in ("learning_rate", "vae_learning_rate", "max_minutes", "vae_max_minutes",
                     "snr_gamma"):  # fmt: skip
            if getattr(self, name) is not None:
                check_number(getattr(self, name), f"fit option {name}", 0.0, above=True)
        check_number(self.ema_decay, "fit option ema_decay", 0.0)
        if not 0 <= self.ema_decay < 1:
            raise InputError(
                f"fit option ema_decay={self.ema_decay!r} must be in [0, 1) (0 turns EMA off)"
            )
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise InputError(
                f"fit option mixed_precision={self.mixed_precision!r}: use auto, no, fp16 or bf16"
            )
        if self.max_minutes and self.vae_max_minutes and self.vae_max_minutes >= self.max_minutes:
            raise InputError(
                f"fit option vae_max_minutes={self.vae_max_minutes:g} leaves nothing of "
                f"max_minutes={self.max_minutes:g} (the bound of the whole fit) for diffusion "
                "training: lower it, or raise max_minutes"
            )

    def vae_seconds(self) -> float | None:
        """The autoencoder stage's wall-time budget in seconds (None: unbounded).

        ``vae_max_minutes`` when given (inside ``max_minutes`` when that is set too), else
        :data:`VAE_SHARE` of ``max_minutes``. The autoencoder also stops at ``vae_steps``;
        whatever it leaves of ``max_minutes`` goes to the diffusion stage.
        """
        if self.vae_max_minutes is not None:
            return self.vae_max_minutes * 60
        return None if self.max_minutes is None else VAE_SHARE * self.max_minutes * 60

    def autoencoder_options(self, defaults: Any) -> Any:
        """The options of the autoencoder this fit trains: the preset's ``defaults``
        (:class:`~.autoencoder_training.AutoencoderTrainOptions`) with this fit's ``vae_*``
        options and ``seed``."""
        from htd_core.options import override

        given = {"steps": self.vae_steps, "learning_rate": self.vae_learning_rate,
                 "adversarial_weight": self.vae_adversarial_weight,
                 "adversarial_start": self.vae_adversarial_start,
                 "perceptual_weight": self.vae_perceptual_weight, "seed": self.seed}  # fmt: skip
        return override(defaults, {k: v for k, v in given.items() if v is not None}, "fit")

    def trajectory_config(self) -> dict[str, Any]:
        """The options that determine the weights (compared on resume)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in self.RUNTIME
            and not (f.name in self.LATER and getattr(self, f.name) == self.LATER[f.name])
        }


class EMA:
    """Exponential moving average of parameters with warm-up: decay_t = min(d, (1+t)/(10+t))."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        names, params = zip(*module.named_parameters(), strict=True)
        shadow = [self.shadow[k] for k in names]
        torch._foreach_lerp_(shadow, [p.detach().float() for p in params], 1 - d)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        for k, p in module.named_parameters():
            p.copy_(self.shadow[k].to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone().float() for k, v in state.items()}


def step_generator(seed: int, *key: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, *key)`` (step-addressable randomness)."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, *key]).integers(2**62)))


def choose_mixed_precision(option: str) -> str:
    if option != "auto":
        return option
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def diffusion_loss(
    denoiser: Callable[..., torch.Tensor],
    noise_scheduler: Any,
    latents: torch.Tensor,
    spatial: torch.Tensor | None,
    tokens: torch.Tensor | None,
    generator: torch.Generator,
    condition_dropout: float,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Mean squared error of the denoiser's epsilon or v prediction on one batch, optionally
    Min-SNR-gamma weighted per sample (see ``TrainOptions.snr_gamma``)."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b,), generator=generator).to(
        latents.device
    )
    keep = (torch.rand(b, generator=generator) >= condition_dropout).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    v_prediction = noise_scheduler.config.prediction_type == "v_prediction"
    target = noise_scheduler.get_velocity(latents, noise, t) if v_prediction else noise
    pred = denoiser(noisy, t, spatial, tokens, keep)
    if snr_gamma is None:
        return torch.nn.functional.mse_loss(pred.float(), target.float())
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, t)
    weight = torch.clamp(snr, max=snr_gamma) / (snr + 1 if v_prediction else snr)
    per_sample = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none")
    return (per_sample.mean(dim=tuple(range(1, per_sample.ndim))) * weight).mean()


def check_finite(loss: torch.Tensor, step: int, last_checkpoint: str | None) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        kept = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"training loss became {value} at step {step}; stopped without saving the broken "
            f"weights ({kept}). Lower learning_rate, or use mixed_precision=no"
        )
