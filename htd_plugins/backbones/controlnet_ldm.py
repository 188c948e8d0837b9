"""``controlnet_ldm``: the paper's backbone, a latent diffusion UNet steered by a ControlNet.

The ControlNet (diffusers ``ControlNetModel``, a trainable copy of the UNet's encoder) takes
the condition at pixel resolution: its conditioning embedding has one stride-2 stage per
autoencoder level, so a 256 px map + crops reaches the 64 x 64 latent grid through learned
convolutions and crop texture is encoded rather than interpolated away. Its residuals are
added to the UNet's skip connections; tokens (or the learned null token) feed cross-attention.
Saved folders load in diffusers' ``StableDiffusionControlNetPipeline`` (``model_index.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_plugins.backbones.ldm.base import Denoiser, LatentDiffusionBackbone
from htd_plugins.backbones.ldm.options import LatentDiffusionOptions


class ControlNetDenoiser(Denoiser):
    """UNet + ControlNet residuals (no ControlNet when the condition has no spatial channels)."""

    def inject(self, noisy, t, spatial, states):
        unet = self.parts["unet"]
        if spatial is None or "controlnet" not in self.parts:
            return unet(noisy, t, encoder_hidden_states=states, return_dict=False)[0]
        down, mid = self.parts["controlnet"](
            noisy,
            t,
            encoder_hidden_states=states,
            controlnet_cond=spatial.to(noisy.dtype),
            return_dict=False,
        )
        return unet(
            noisy, t, encoder_hidden_states=states,
            down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False,
        )[0]  # fmt: skip


@dataclass(frozen=True)
class ControlNetOptions(LatentDiffusionOptions):
    """:class:`~htd_plugins.backbones.ldm.options.LatentDiffusionOptions` plus:

    Attributes:
        zero_init: start the ControlNet's output convolutions at zero, as ControlNet does to
            protect a pretrained UNet. Off by default: here UNet and ControlNet are trained
            together from scratch, and PyTorch's default initialisation lets gradients reach
            the condition path from the first step (on the demo, the map is followed after a
            few hundred steps instead of not at all).
    """

    zero_init: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.zero_init, bool):
            raise InputError(f"zero_init={self.zero_init!r} must be true or false")


class ControlNetLDM(LatentDiffusionBackbone):
    """Latent diffusion + ControlNet on the pixel-resolution condition (the paper's model).

    Options: :class:`ControlNetOptions` (keywords, e.g. ``ControlNetLDM(preset="tiny")``).
    """

    name = "controlnet_ldm"
    Options = ControlNetOptions
    part_names = ("unet", "token_encoder")

    def build_parts(
        self, num_channels: int, token_dim: int, latent_channels: int
    ) -> dict[str, nn.Module]:
        from diffusers import ControlNetModel

        from htd_plugins.backbones.ldm.autoencoders import condition_widths
        from htd_plugins.backbones.ldm.modules import build_token_encoder, build_unet

        latent_size = self.image_size // self.require_autoencoder().factor
        unet = build_unet(self.preset, latent_channels, latent_channels, latent_size)
        parts: dict[str, nn.Module] = {
            "unet": unet,
            "token_encoder": build_token_encoder(self.preset, token_dim),
        }
        if num_channels:
            controlnet = ControlNetModel.from_unet(
                unet,
                conditioning_channels=num_channels,
                conditioning_embedding_out_channels=condition_widths(
                    self.preset.conditioning_embedding_out_channels, self.autoencoder.factor
                ),
            )
            if not self.config.zero_init:
                _default_init(controlnet)
            parts["controlnet"] = controlnet
        return parts

    def make_denoiser(self, parts: dict[str, nn.Module]) -> Denoiser:
        return ControlNetDenoiser(parts)

    def part_class(self, name: str) -> type:
        from diffusers import ControlNetModel, UNet2DConditionModel

        from htd_plugins.backbones.ldm.modules import ClassEmbedding, TokenEncoder

        return {
            "unet": UNet2DConditionModel,
            "controlnet": ControlNetModel,
            "token_encoder": TokenEncoder,
            "class_embedding": ClassEmbedding,
        }[name]

    def write_extra(self, folder: Path) -> None:
        """A ``model_index.json`` so ``StableDiffusionControlNetPipeline.from_pretrained`` loads
        the folder (no text encoder: pass the null token as ``prompt_embeds``); not written for
        an autoencoder diffusers has no class for (TAEF2) nor with a class embedding
        (``crop_slots``, which no diffusers pipeline applies): such folders load in htd only."""
        import diffusers

        from htd_core.io import atomic_write_json
        from htd_plugins.backbones.ldm.kl import KLAutoencoder
        from htd_plugins.backbones.ldm.sampling import make_scheduler

        scheduler = make_scheduler("ddim", self.noise_config)  # as model_folder saves it
        parts = self.denoiser.parts
        if (
            "controlnet" not in parts
            or "class_embedding" in parts
            or not isinstance(self.autoencoder, KLAutoencoder)
        ):
            return
        none = [None, None]
        atomic_write_json(folder / "model_index.json", {
            "_class_name": "StableDiffusionControlNetPipeline", "_diffusers_version": diffusers.__version__,
            "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
            "controlnet": ["diffusers", "ControlNetModel"], "scheduler": ["diffusers", type(scheduler).__name__],
            "text_encoder": none, "tokenizer": none, "safety_checker": none, "feature_extractor": none,
            "image_encoder": none, "requires_safety_checker": False,
        })  # fmt: skip


def _default_init(controlnet: nn.Module) -> None:
    """Give the ControlNet's zero-initialised output convolutions PyTorch's default init, so
    gradients reach the condition path from the first step."""
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                  controlnet.controlnet_cond_embedding.conv_out]  # fmt: skip
    for conv in zero_convs:
        conv.reset_parameters()


@hookimpl
def htd_register_backbones(registry) -> None:
    registry.register("controlnet_ldm", ControlNetLDM)
