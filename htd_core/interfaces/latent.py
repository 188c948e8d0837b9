"""The latent-diffusion interface: an :class:`Autoencoder` and a :class:`LatentBackbone` that
denoises in its latent space.

Applications that work on latents (slide synthesis denoises one latent canvas in windows, the
experiment trains one autoencoder for every arm, ``htd train-vae``) use these declarations,
never a backbone's internals. An autoencoder may be trained here (``train_autoencoder``),
pretrained and frozen, or the identity of pixel space (``factor`` 1): the backbone declares
which through ``autoencoder``.

Tensors follow diffusers: images float N x 3 x H x W in [-1, 1]; latents float
N x C x H/f x W/f, multiplied by the autoencoder's ``scaling_factor`` (Stable Diffusion's
0.18215 convention: unit variance for the denoiser).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core.errors import InputError
from htd_core.interfaces.backbone import Backbone
from htd_core.types import Condition


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W in [-1, 1] (``x / 127.5 - 1``)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float N x 3 x H x W in [-1, 1] -> uint8 N x H x W x 3 (diffusers' rounding:
    ``round(clamp(x / 2 + 0.5, 0, 1) * 255)``)."""
    x = (x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (x * 255).round().astype(np.uint8)


class Autoencoder(ABC):
    """Images to latents and back.

    Attributes:
        factor: pixels per latent cell along a side (the spatial downsampling; 1: pixel space).
        latent_channels: C of the latents.
        scaling_factor: latents are the encoder's output times this.
    """

    factor: int = 1
    latent_channels: int = 3
    scaling_factor: float = 1.0

    @abstractmethod
    def distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of the *unscaled* latents of ``images``
        (float N x 3 x H x W in [-1, 1]); the deviation is zeros for a deterministic encoder.
        Training samples ``(mean + std * noise) * scaling_factor``."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents N x C x h x w -> images float N x 3 x (h f) x (w f) in [-1, 1]."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the autoencoder to folder ``path`` (atomically)."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where its weights are."""

    @abstractmethod
    def to(self, device: str | torch.device) -> Autoencoder:
        """Move its weights (in place); returns itself."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images float N x 3 x H x W in [-1, 1] -> scaled latents (the posterior mean)."""
        mean, _ = self.distribution(images)
        return mean * self.scaling_factor

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """uint8 N x H x W x 3 -> encode (posterior mean) -> decode -> uint8, same shape.

        Sides that are not a multiple of :attr:`factor` are padded by reflection to the next
        multiple and the padding is cut off again, so every input pixel has its reconstruction.

        Raises:
            InputError: not uint8 N x H x W x 3 images.
        """
        import torch.nn.functional as F

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InputError(
                f"reconstruct: expected uint8 images N x H x W x 3, got {images.dtype} {images.shape}"
            )
        ae = self
        h, w = images.shape[1:3]
        pad_h, pad_w = -h % ae.factor, -w % ae.factor
        out = []
        for start in range(0, len(images), batch_size):
            x = to_model_range(images[start : start + batch_size]).to(ae.device)
            if pad_h or pad_w:
                mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
            out.append(to_uint8(ae.decode(ae.encode(x))[:, :, :h, :w]))
        return np.concatenate(out) if out else images.copy()


class LatentBackbone(Backbone):
    """A backbone that denoises in the latent space of :attr:`autoencoder`.

    Attributes:
        autoencoder: the autoencoder it uses (None before ``fit`` or ``load``).
        image_size: side of its training windows in px (a window of the latent canvas is
            ``image_size / autoencoder.factor`` cells).
        device: where the model runs.
    """

    autoencoder: Autoencoder | None = None
    image_size: int
    device: torch.device

    # -- what subclasses implement --------------------------------------------------------
    @property
    @abstractmethod
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (autoencoder and denoiser downsampling)."""

    @abstractmethod
    def sampling_scheduler(self, name: str) -> Any:
        """A fresh diffusers scheduler ``name`` on the model's training noise schedule.

        Raises:
            InputError: an unknown scheduler name (lists the known ones).
        """

    @abstractmethod
    def predict_noise(
        self,
        latents: torch.Tensor,
        t: Any,
        conditions: Sequence[Condition],
        *,
        guidance_scale: float,
    ) -> torch.Tensor:
        """One guided model evaluation (``null + g (cond - null)``), for callers that run
        their own sampling loop.

        Args:
            latents: float B x C x h x w noisy latents after ``scheduler.scale_model_input``.
            t: the scheduler's timestep.
            conditions: one per row, each of ``h * factor`` x ``w * factor`` px.
            guidance_scale: as :class:`~htd_core.generation.GenerationOptions` (resolved by the
                caller; this method reads no default).

        Returns:
            The model output (epsilon or v, as trained), B x C x h x w on :attr:`device`.
        """

    @abstractmethod
    def train_autoencoder(
        self,
        images: np.ndarray,
        *,
        checkpoint: str | Path | None = None,
        max_minutes: float | None = None,
        progress: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Give the backbone a new autoencoder trained on ``images`` (uint8 N x H x W x 3).

        The one autoencoder training of htd: ``fit`` calls it when the backbone has none,
        ``htd train-vae`` and the experiment call it directly and save :attr:`autoencoder`.

        Args:
            checkpoint: file of an atomic checkpoint; an existing one is resumed exactly.
            max_minutes: stop (and checkpoint) when this wall time is spent.
            **options: the backbone's autoencoder training options (steps, batch size...).

        Returns:
            A summary (steps, final loss, seconds, scaling factor...).

        Raises:
            InputError: no images, unknown or invalid options, or an autoencoder that cannot
                be trained (a pretrained, frozen one).
        """

    @abstractmethod
    def weights_digest(self) -> str:
        """A short hash of every weight the model samples with (denoiser and autoencoder):
        a resumed job checks it is still the same model."""

    # -- shared ---------------------------------------------------------------------------
    def require_autoencoder(self) -> Autoencoder:
        """:attr:`autoencoder`, or an InputError saying the model has none yet."""
        if self.autoencoder is None:
            raise InputError(
                f"{self.name} has no autoencoder yet: call fit() or load a saved model folder"
            )
        return self.autoencoder

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latents of a ``height`` x ``width`` px image.

        Raises:
            InputError: a side that is not a multiple of the autoencoder's factor.
        """
        ae = self.require_autoencoder()
        if height % ae.factor or width % ae.factor:
            raise InputError(
                f"{height}x{width} px is not a multiple of the autoencoder's {ae.factor} px cells"
            )
        return ae.latent_channels, height // ae.factor, width // ae.factor

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """uint8 N x H x W x 3 -> scaled latents N x C x H/f x W/f (posterior mean), on
        :attr:`device`."""
        ae = self.require_autoencoder()
        return ae.encode(to_model_range(images).to(ae.device))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Scaled latents N x C x h x w -> uint8 N x (h f) x (w f) x 3 (diffusers' rounding)."""
        return to_uint8(self.decode_float(latents))

    @torch.no_grad()
    def decode_float(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> float images N x 3 x (h f) x (w f) in [-1, 1] (for callers that
        blend decoded tiles before rounding)."""
        ae = self.require_autoencoder()
        return ae.decode(latents.to(ae.device))

    def reconstruct(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """:meth:`Autoencoder.reconstruct` with this backbone's autoencoder."""
        return self.require_autoencoder().reconstruct(images, batch_size)
