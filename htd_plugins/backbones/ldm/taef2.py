"""TAEF2, a pretrained tiny autoencoder (8x, 32 latent channels), behind htd's
:class:`~htd_core.interfaces.latent.Autoencoder` interface.

The network is written here from the layout of its published state dicts (TAEF2 of
madebyollin/taesd, MIT licence: the files ``taef2_encoder.pth`` and ``taef2_decoder.pth``; see
docs/autoencoders.md for where a user gets them). It was distilled for the FLUX.2 latent space
on natural images, never on H&E; it is deterministic (no posterior variance). Weights are read
with ``torch.load(weights_only=True)`` from a local folder only (htd downloads nothing).

Latents: the raw encoder output (roughly within +-3) minus a per-channel mean, times one
scaling factor (1 / std), both measured on the training patches
(:meth:`TinyAutoencoder.measure_statistics`) as Stable Diffusion chose its 0.18215; a saved
folder (``config.json`` + ``model.safetensors``) keeps them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from htd_core.errors import InputError
from htd_core.interfaces.latent import Autoencoder, to_model_range

#: File names of the published weights (as in the public repository).
WEIGHT_FILES = ("taef2_encoder.pth", "taef2_decoder.pth")
#: ``config.json``'s ``htd_autoencoder`` value of a folder saved by htd.
KIND = "taef2"
WIDTH, LATENT_CHANNELS, FACTOR = 64, 32, 8


class Block(nn.Module):
    """Three 3x3 convolutions with ReLU between, an identity skip, then ReLU; a GN block first
    adds a residual 1x1 -> GroupNorm(4) -> ReLU -> 1x1 branch (4x wider) to its input."""

    def __init__(self, width: int = WIDTH, group_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )  # fmt: skip
        self.pool = (
            nn.Sequential(
                nn.Conv2d(width, 4 * width, 1, bias=False),
                nn.GroupNorm(4, 4 * width),
                nn.ReLU(),
                nn.Conv2d(4 * width, width, 1, bias=False),
            )  # fmt: skip
            if group_norm
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class Clamp(nn.Module):
    """``tanh(x / 3) * 3``: the decoder's soft clamp of its input latents."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _conv(a: int, b: int, **kw: Any) -> nn.Conv2d:
    return nn.Conv2d(a, b, 3, padding=1, **kw)


def build_encoder() -> nn.Sequential:
    """RGB in [0, 1] N x 3 x H x W -> raw latents N x 32 x H/8 x W/8 (indices as published)."""
    layers: list[nn.Module] = [_conv(3, WIDTH), Block()]
    for stage in range(3):
        layers += [_conv(WIDTH, WIDTH, stride=2, bias=False)]
        layers += [Block(group_norm=stage == 2) for _ in range(3)]
    return nn.Sequential(*layers, _conv(WIDTH, LATENT_CHANNELS))


def build_decoder() -> nn.Sequential:
    """Raw latents N x 32 x h x w -> RGB (about [0, 1]) N x 3 x 8h x 8w (indices as published)."""
    layers: list[nn.Module] = [Clamp(), _conv(LATENT_CHANNELS, WIDTH), nn.ReLU()]
    for stage in range(3):
        layers += [Block(group_norm=stage == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv(WIDTH, WIDTH, bias=False)]
    return nn.Sequential(*layers, Block(), _conv(WIDTH, 3))


class TinyNetwork(nn.Module):
    """The encoder and decoder as one module (what is saved, digested and fine-tuned)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = build_encoder()
        self.decoder = build_decoder()


class TinyAutoencoder(Autoencoder):
    """TAEF2 behind the :class:`Autoencoder` interface (``factor`` 8, 32 channels).

    Args:
        module: a :class:`TinyNetwork` with its weights.
        latent_mean: float32 (32,) per-channel mean of the raw training latents (subtracted).
        scaling_factor: 1 / std of the centred training latents.
    """

    factor = FACTOR
    latent_channels = LATENT_CHANNELS

    def __init__(
        self,
        module: TinyNetwork,
        latent_mean: np.ndarray | None = None,
        scaling_factor: float = 1.0,
    ) -> None:
        self.module = module
        mean = np.zeros(LATENT_CHANNELS, np.float32) if latent_mean is None else latent_mean
        self.latent_mean = torch.as_tensor(np.asarray(mean, np.float32)).view(1, -1, 1, 1)
        self.scaling_factor = float(scaling_factor)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_weights(cls, folder: str | Path) -> TinyAutoencoder:
        """The published weights in ``folder`` (``taef2_encoder.pth``, ``taef2_decoder.pth``),
        as float32; statistics not yet measured (mean 0, scale 1).

        Raises:
            InputError: a file missing, or a state dict that does not fit the layout.
        """
        folder = Path(folder).expanduser()
        missing = [f for f in WEIGHT_FILES if not (folder / f).is_file()]
        if missing:
            raise InputError(
                f"TAEF2 folder {folder} lacks {', '.join(missing)}: put the two files of "
                "madebyollin/taesd there (docs/autoencoders.md says where to get them)"
            )
        net = TinyNetwork()
        for part, name in zip((net.encoder, net.decoder), WEIGHT_FILES, strict=True):
            state = torch.load(folder / name, map_location="cpu", weights_only=True)
            try:
                part.load_state_dict({k: v.float() for k, v in state.items()})
            except RuntimeError as err:
                first = str(err).splitlines()[0]
                raise InputError(f"{folder / name} is not a TAEF2 state dict ({first})") from None
        return cls(net)

    @classmethod
    def load(cls, folder: str | Path) -> TinyAutoencoder:
        """A folder saved by :meth:`save` (``config.json`` + ``model.safetensors``).

        Raises:
            InputError: not such a folder.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("htd_autoencoder") != KIND or not (folder / "model.safetensors").is_file():
            raise InputError(
                f"{folder} is not a TAEF2 folder saved by htd (config.json, model.safetensors)"
            )
        net = TinyNetwork()
        net.load_state_dict(load_file(folder / "model.safetensors"))
        return cls(net, np.asarray(config["latent_mean"], np.float32), config["scaling_factor"])

    def save(self, path: str | Path) -> None:
        from htd_core.io import atomic_write_folder

        atomic_write_folder(path, self.write_to, kind="autoencoder")

    def write_to(self, folder: str | Path) -> None:
        """Write ``config.json`` (kind, statistics) and ``model.safetensors`` into ``folder``
        (not atomic: for a caller that writes a temp folder)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, folder / "model.safetensors")
        config = {"htd_autoencoder": KIND, "factor": FACTOR, "latent_channels": LATENT_CHANNELS,
                  "scaling_factor": self.scaling_factor,
                  "latent_mean": [float(v) for v in self.latent_mean.flatten()]}  # fmt: skip
        (folder / "config.json").write_text(json.dumps(config, indent=1))

    # -- the interface --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device: str | torch.device) -> TinyAutoencoder:
        self.module.to(device)
        return self

    def frozen(self, device: str | torch.device) -> TinyAutoencoder:
        """On ``device``, in eval mode, without gradients."""
        self.module.to(device).eval().requires_grad_(False)
        return self

    def trainable(self, device: str | torch.device) -> list[torch.nn.Parameter]:
        """On ``device``; the decoder in train mode and returned for the optimizer, the encoder
        frozen (fine-tuning keeps the latents, and so the calibration, of the weights)."""
        self.module.to(device)
        self.module.encoder.eval().requires_grad_(False)
        self.module.decoder.train().requires_grad_(True)
        return list(self.module.decoder.parameters())

    def last_layer(self) -> torch.Tensor:
        """The decoder's output convolution weight (LDM's adaptive adversarial weight)."""
        return self.module.decoder[-1].weight

    def raw(self, images: torch.Tensor) -> torch.Tensor:
        """Images float N x 3 x H x W in [-1, 1] -> raw latents (H, W multiples of 8)."""
        x = images.to(self.device, torch.float32)
        return self.module.encoder(x.add(1).div(2))

    def distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.raw(images) - self.latent_mean.to(self.device)
        return mean, torch.zeros_like(mean)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.device, torch.float32) / self.scaling_factor
        return self.module.decoder(z + self.latent_mean.to(self.device)).mul(2).sub(1)

    @torch.no_grad()
    def measure_statistics(self, images: np.ndarray, batch_size: int = 32) -> None:
        """Set the per-channel mean and the scaling factor from up to 256 ``images`` (uint8
        N x H x W x 3, sides multiples of 8).

        Raises:
            InputError: no images, or latents whose std is not a positive finite number.
        """
        if len(images) == 0:
            raise InputError("TAEF2: no images to measure its latent statistics on")
        z = torch.cat([self.raw(to_model_range(images[s : s + batch_size])).float().cpu()
                       for s in range(0, min(len(images), 256), batch_size)])  # fmt: skip
        mean = z.mean(dim=(0, 2, 3), keepdim=True)
        std = float((z - mean).std())
        if not math.isfinite(std) or std <= 0:
            raise InputError(f"TAEF2 latents have std {std}: the weights are broken")
        self.latent_mean, self.scaling_factor = mean, 1.0 / std
