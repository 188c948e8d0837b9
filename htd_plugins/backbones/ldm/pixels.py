"""Pixel space behind the :class:`~htd_core.interfaces.latent.Autoencoder` interface: no
autoencoder at all (``factor`` 1, 3 channels, scaling factor 1).

The latent backbones then denoise the image itself (float N x 3 x H x W in [-1, 1], as DDPM
and every pixel-space diffusion model does; Ho et al. 2020, Sec. 3.3), so nothing a decoder
loses is lost: the reconstruction row of the experiment equals real vs real. The price is the
grid: a 64 px patch is a 64 x 64 grid for the UNet, 16x the cells of the 4x KL autoencoder's
16 x 16 latent. Selected by the backbones' ``autoencoder`` option ``pixels`` (or a folder this
class saved, e.g. a model folder's ``vae/``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from htd_core.interfaces.latent import Autoencoder

#: The ``autoencoder`` option's value that selects pixel space, and ``config.json``'s
#: ``htd_autoencoder`` value of a folder saved by it.
KIND = "pixels"


class PixelSpace(Autoencoder):
    """The identity autoencoder: latents are the images in [-1, 1] (deterministic)."""

    factor = 1
    latent_channels = 3

    def __init__(self) -> None:
        self.scaling_factor = 1.0
        self.module = torch.nn.Identity()  # no weights: what a weights digest reads
        self._device = torch.device("cpu")

    def distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, torch.zeros_like(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents / self.scaling_factor

    def save(self, path: str | Path) -> None:
        """Folder ``path`` with a ``config.json`` naming pixel space (no weights), atomically."""
        from htd_core.io import atomic_write_folder

        atomic_write_folder(path, self.write_to, kind="autoencoder")

    def write_to(self, folder: str | Path) -> None:
        """Write ``config.json`` into ``folder`` (not atomic: for a caller that writes a temp
        folder, as a model folder's ``vae/``)."""
        import json

        Path(folder).mkdir(parents=True, exist_ok=True)
        config = {"htd_autoencoder": KIND, "factor": 1, "latent_channels": 3}
        (Path(folder) / "config.json").write_text(json.dumps(config, indent=1))

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device) -> PixelSpace:
        self._device = torch.device(device)
        return self

    def frozen(self, device: str | torch.device) -> PixelSpace:
        """On ``device`` (nothing to freeze)."""
        return self.to(device)
