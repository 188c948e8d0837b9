"""The KL autoencoder of the latent diffusion backbones: diffusers' ``AutoencoderKL`` behind
htd's :class:`~htd_core.interfaces.latent.Autoencoder` interface.

No pretrained histology autoencoder can be downloaded here, so a small ``AutoencoderKL`` is
trained on the patches themselves (:func:`.autoencoder_training.train_autoencoder_loop`, through
``LatentBackbone.train_autoencoder``), or one saved before is loaded from a local folder.
Latents are multiplied by a scaling factor measured on the training patches (1 / std of the
latents, as Stable Diffusion chose its 0.18215), kept in the diffusers config so diffusers'
pipelines use it too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core.errors import InputError
from htd_core.interfaces.latent import Autoencoder, to_model_range


class KLAutoencoder(Autoencoder):
    """A diffusers ``AutoencoderKL`` (``module``): posterior mean and std, decode, save.

    Args:
        module: the ``AutoencoderKL``.
    """

    def __init__(self, module: Any) -> None:
        self.module = module

    @classmethod
    def build(cls, config: dict[str, Any], image_size: int, seed: int = 0) -> KLAutoencoder:
        """A freshly initialised ``AutoencoderKL`` of diffusers ``config`` (seeded)."""
        from diffusers import AutoencoderKL

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(AutoencoderKL(**config, sample_size=image_size))

    @classmethod
    def load(cls, source: str | Path) -> KLAutoencoder:
        """From a local diffusers folder (``config.json`` + weights) or a pipeline folder
        with ``vae/``.

        Raises:
            InputError: ``source`` is not a local folder holding one.
        """
        from diffusers import AutoencoderKL

        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(
                f"autoencoder {str(source)!r} is not a local folder (htd downloads nothing): "
                "train one with `htd train-vae` and pass its folder"
            )
        for folder in (path, path / "vae"):
            if (folder / "config.json").is_file():
                return cls(AutoencoderKL.from_pretrained(folder))
        raise InputError(
            f"autoencoder folder {path} has no config.json (nor vae/config.json): give a folder "
            "written by `htd train-vae` or by diffusers' save_pretrained"
        )

    # -- the interface --------------------------------------------------------------------
    @property
    def factor(self) -> int:  # type: ignore[override]
        return 2 ** (len(self.module.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:  # type: ignore[override]
        return int(self.module.config.latent_channels)

    @property
    def scaling_factor(self) -> float:  # type: ignore[override]
        return float(self.module.config.scaling_factor)

    @scaling_factor.setter
    def scaling_factor(self, value: float) -> None:
        self.module.register_to_config(scaling_factor=float(value))

    @property
    def device(self) -> torch.device:
        return self.module.device

    def to(self, device: str | torch.device) -> KLAutoencoder:
        self.module.to(device)
        return self

    def distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.module.encode(images.to(self.module.device, self.module.dtype)).latent_dist
        return dist.mean, dist.std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """As diffusers pipelines decode: ``decode(latents / scaling_factor)``."""
        z = latents.to(self.module.device, self.module.dtype) / self.scaling_factor
        return self.module.decode(z, return_dict=False)[0]

    def save(self, path: str | Path) -> None:
        from htd_core.io import atomic_write_folder

        atomic_write_folder(path, self.write_to, kind="autoencoder")

    def write_to(self, folder: str | Path) -> None:
        """Write the diffusers folder (``config.json`` + weights) into ``folder`` (not
        atomic: for a caller that writes a temp folder, e.g. a model folder's ``vae/``)."""
        self.module.save_pretrained(folder)

    # -- htd's own ------------------------------------------------------------------------
    def trainable(self, device: str | torch.device) -> list[torch.nn.Parameter]:
        """On ``device`` in train mode; every weight is trained (returned for the optimizer)."""
        self.module.to(device).train().requires_grad_(True)
        return list(self.module.parameters())

    def last_layer(self) -> torch.Tensor:
        """The decoder's output convolution weight (LDM's adaptive adversarial weight)."""
        return self.module.decoder.conv_out.weight

    def frozen(self, device: str | torch.device) -> KLAutoencoder:
        """On ``device``, in eval mode, without gradients (as a trained model uses it)."""
        self.module.to(device).eval().requires_grad_(False)
        return self

    @torch.no_grad()
    def measure_scaling_factor(
        self, images: np.ndarray, batch_size: int = 32, seed: int = 0
    ) -> float:
        """1 / std of posterior samples of up to 256 ``images`` (uint8 N x H x W x 3).

        Raises:
            InputError: the latents' std is not a positive finite number (a broken model).
        """
        gen = torch.Generator().manual_seed(seed)
        latents = []
        for start in range(0, min(len(images), 256), batch_size):
            mean, std = self.distribution(to_model_range(images[start : start + batch_size]))
            noise = torch.randn(mean.shape, generator=gen).to(mean.device, mean.dtype)
            latents.append((mean + std * noise).float().cpu())
        value = float(torch.cat(latents).std())
        if not math.isfinite(value) or value <= 0:
            raise InputError(
                f"the autoencoder's latents have std {value}: it is broken (retrain it)"
            )
        return 1.0 / value
