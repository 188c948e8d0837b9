"""Model-size presets of the latent diffusion backbones: ``tiny``, ``small``, ``paper``.

A preset fixes the architecture (diffusers configs of the autoencoder, the UNet and the
condition path) and the defaults of training the denoiser (:class:`.training.TrainOptions`) and
the autoencoder (:class:`.autoencoder_training.AutoencoderTrainOptions`); options given to a
call override them through the one preset helper (:func:`htd_core.options.override`). Like
timm's tiny ``test_*`` models, ``tiny`` exists so that tests train, save and sample in seconds
on a CPU.

- ``tiny``: 16 px patches, f2 autoencoder, a UNet of (16, 32) channels (tests).
- ``small``: 64 px patches, f4 autoencoder, a UNet of about 2.5 M parameters and a ControlNet
  of about 1 M (CPU runs, the demo); trains with Min-SNR-5 loss weighting.
- ``paper``: 256 px patches, f4 autoencoder of 55 M parameters (64 x 64 x 4 latents, as LDM's
  KL-f4), a UNet of 166 M parameters and its ControlNet copy (GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from htd_core.options import preset
from htd_plugins.backbones.ldm.autoencoder_training import AutoencoderTrainOptions
from htd_plugins.backbones.ldm.training import TrainOptions


@dataclass(frozen=True)
class Preset:
    """Architecture and training defaults of one model size.

    Attributes:
        name: preset name.
        image_size: training patch side in pixels.
        vae: ``AutoencoderKL`` constructor arguments (its downsampling factor is
            ``2 ** (len(block_out_channels) - 1)``).
        unet: ``UNet2DConditionModel`` arguments, without ``in_channels`` / ``sample_size``.
        cross_attention_dim: width of the cross-attention tokens (null token, projected tokens).
        conditioning_embedding_out_channels: ControlNet conditioning-embedding widths; one entry
            per VAE level so the pixel-resolution condition is downsampled by the VAE's factor.
        rescaler_channels: output channels of ``concat_ldm``'s learned condition rescaler.
        train: defaults of the denoiser's training options (``fit``'s options override them).
        autoencoder_train: defaults of the autoencoder's training options.
    """

    name: str
    image_size: int
    vae: dict[str, Any]
    unet: dict[str, Any]
    cross_attention_dim: int
    conditioning_embedding_out_channels: tuple[int, ...]
    rescaler_channels: int
    train: TrainOptions = field(default_factory=TrainOptions)
    autoencoder_train: AutoencoderTrainOptions = field(default_factory=AutoencoderTrainOptions)

    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell along one side."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def unet_factor(self) -> int:
        """The UNet's downsampling of the latent grid."""
        return 2 ** (len(self.unet["block_out_channels"]) - 1)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE and UNet downsampling together; with
        another autoencoder, its factor times :attr:`unet_factor`)."""
        return self.vae_factor * self.unet_factor


def _vae(channels: tuple[int, ...], groups: int, latent_channels: int = 4, layers: int = 1) -> dict:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * len(channels),
        "up_block_types": ("UpDecoderBlock2D",) * len(channels),
        "block_out_channels": channels,
        "layers_per_block": layers,
        "latent_channels": latent_channels,
        "norm_num_groups": groups,
    }


def _unet(
    channels: tuple[int, ...], attention: tuple[bool, ...], groups: int, heads: int, layers: int
) -> dict:
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return {
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "attention_head_dim": heads,
    }


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        image_size=16,
        vae=_vae((8, 16), groups=4),
        unet=_unet((16, 32), (False, True), groups=8, heads=4, layers=1),
        cross_attention_dim=16,
        conditioning_embedding_out_channels=(8, 16),
        rescaler_channels=4,
        train=TrainOptions(batch_size=4, learning_rate=1e-3, warmup_steps=2),
        autoencoder_train=AutoencoderTrainOptions(steps=4, batch_size=4),
    ),
    "small": Preset(
        name="small",
        image_size=64,
        vae=_vae((16, 32, 64), groups=8),
        unet=_unet((32, 64, 96), (False, False, True), groups=16, heads=8, layers=1),
        cross_attention_dim=64,
        conditioning_embedding_out_channels=(16, 32, 64),
        rescaler_channels=8,
        # Min-SNR-5 (Hang et al., ICCV 2023): better or tied on every score of both datasets in
        # the cpu-quick ablation (docs/results.md); v-prediction was mixed, so epsilon stays.
        train=TrainOptions(
            batch_size=16, learning_rate=1e-3, warmup_steps=50, sample_every=500, snr_gamma=5.0
        ),
        autoencoder_train=AutoencoderTrainOptions(
            steps=1000, batch_size=16, learning_rate=2e-3, crop_size=32
        ),
    ),
    "paper": Preset(
        name="paper",
        image_size=256,
        vae=_vae((128, 256, 512), groups=32, layers=2),
        unet=_unet((128, 256, 512, 512), (False, True, True, True), groups=32, heads=64, layers=2),
        cross_attention_dim=512,
        conditioning_embedding_out_channels=(32, 64, 128),
        rescaler_channels=16,
        train=TrainOptions(batch_size=16, learning_rate=1e-4, warmup_steps=500, sample_every=2000),
        autoencoder_train=AutoencoderTrainOptions(steps=20000, batch_size=16),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the presets (InputError)."""
    return preset(PRESETS, name, what="backbone preset")
