"""``concat_ldm``: the first author's public code path, the condition concatenated to the
UNet's input after a small learned rescaler brings it to the latent grid.

Same interface, presets and training as ``controlnet_ldm``, so the two ways of injecting the
condition can be compared on equal budgets.
"""

from __future__ import annotations

import torch
from torch import nn

from htd_core import hookimpl
from htd_plugins.backbones.ldm.base import Denoiser, LatentDiffusionBackbone


class ConcatDenoiser(Denoiser):
    """UNet on ``concat(noisy latents, rescaler(condition))``."""

    def inject(self, noisy, t, spatial, states):
        x = noisy
        if spatial is not None and "rescaler" in self.parts:
            x = torch.cat([noisy, self.parts["rescaler"](spatial).to(noisy.dtype)], dim=1)
        return self.parts["unet"](x, t, encoder_hidden_states=states, return_dict=False)[0]


class ConcatLDM(LatentDiffusionBackbone):
    """Latent diffusion with the rescaled condition concatenated to the UNet input."""

    name = "concat_ldm"
    part_names = ("unet", "token_encoder")

    def build_parts(
        self, num_channels: int, token_dim: int, latent_channels: int
    ) -> dict[str, nn.Module]:
        from htd_plugins.backbones.ldm.modules import (
            ConditionRescaler,
            build_token_encoder,
            build_unet,
        )

        latent_size = self.image_size // self.require_autoencoder().factor
        extra = self.preset.rescaler_channels if num_channels else 0
        parts: dict[str, nn.Module] = {
            "unet": build_unet(self.preset, latent_channels + extra, latent_channels, latent_size),
            "token_encoder": build_token_encoder(self.preset, token_dim),
        }
        if num_channels:
            stages = self.autoencoder.factor.bit_length() - 1  # halvings to the latent grid
            parts["rescaler"] = ConditionRescaler(
                in_channels=num_channels, out_channels=extra, n_stages=stages
            )
        return parts

    def make_denoiser(self, parts: dict[str, nn.Module]) -> Denoiser:
        return ConcatDenoiser(parts)

    def part_class(self, name: str) -> type:
        from diffusers import UNet2DConditionModel

        from htd_plugins.backbones.ldm.modules import (
            ClassEmbedding,
            ConditionRescaler,
            TokenEncoder,
        )

        return {
            "unet": UNet2DConditionModel,
            "rescaler": ConditionRescaler,
            "token_encoder": TokenEncoder,
            "class_embedding": ClassEmbedding,
        }[name]


@hookimpl
def htd_register_backbones(registry) -> None:
    registry.register("concat_ldm", ConcatLDM)
