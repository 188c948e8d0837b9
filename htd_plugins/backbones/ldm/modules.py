"""Small trainable modules of the backbones, saved in diffusers' format.

Imported lazily (it imports diffusers at module level): ``htd plugins`` stays fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class TokenEncoder(ModelMixin, ConfigMixin):
    """Cross-attention states: a learned null token, then the condition's projected tokens.

    The null token is always the first state, so a model trained without tokens still has
    something to attend to, and a dropped condition (classifier-free guidance) is the null
    token repeated to the batch's length.

    Args:
        cross_attention_dim: width of the UNet's cross-attention states.
        token_dim: width of the condition's tokens (0: the condition has no tokens).
    """

    @register_to_config
    def __init__(self, cross_attention_dim: int, token_dim: int = 0) -> None:
        super().__init__()
        self.null_token = nn.Parameter(torch.randn(1, cross_attention_dim) * 0.02)
        self.projection = nn.Linear(token_dim, cross_attention_dim) if token_dim else None

    def forward(
        self, tokens: torch.Tensor | None, batch_size: int, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """States B x (1 + N) x D; rows where ``keep`` is False hold only the null token."""
        null = self.null_token.to(self.dtype)[None].expand(batch_size, -1, -1)
        if tokens is None or self.projection is None:
            return null
        projected = self.projection(tokens.to(self.dtype))
        if keep is not None:
            projected = torch.where(keep.view(-1, 1, 1), projected, null.expand_as(projected))
        return torch.cat([null, projected], dim=1)

    def null_states(self, batch_size: int, num_tokens: int) -> torch.Tensor:
        """The states of a dropped (null) condition, B x (1 + num_tokens) x D."""
        return self.null_token.to(self.dtype)[None].expand(batch_size, 1 + num_tokens, -1)


class ConditionRescaler(ModelMixin, ConfigMixin):
    """Bring a pixel-resolution condition to the latent grid (the first author's code path).

    ``n_stages`` bilinear halvings, then a 1x1 convolution mapping the condition's channels to
    ``out_channels`` (as LDM's ``SpatialRescaler``), concatenated to the UNet's input.
    """

    @register_to_config
    def __init__(self, in_channels: int, out_channels: int, n_stages: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        x = condition.to(self.dtype)
        for _ in range(self.config.n_stages):
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        return self.projection(x)


class ClassEmbedding(ModelMixin, ConfigMixin):
    """The class-index channel (``class_index:<K>``, :data:`htd_core.types.CLASS_INDEX`) of a
    condition replaced by a learned embedding of each pixel's class.

    Index 0 (an ignored pixel, or a dropped condition: classifier-free guidance zeroes the
    condition) embeds to zero, so the null condition stays all zero.

    Args:
        num_classes: K, the classes of the map (indices 1..K).
        embedding_dim: E, channels that replace the index channel.
        channel: position of the index channel among the condition's channels.
    """

    @register_to_config
    def __init__(self, num_classes: int, embedding_dim: int, channel: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes + 1, embedding_dim, padding_idx=0)

    @property
    def added_channels(self) -> int:
        """How many channels the condition gains (E - 1)."""
        return self.config.embedding_dim - 1

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """B x C x H x W (float, the index channel holding integers 0..K) -> B x (C - 1 + E)
        x H x W: the index channel's place taken by the embedding."""
        p, k = self.config.channel, self.config.num_classes
        index = condition[:, p].round().long().clamp(0, k)
        embedded = self.embedding(index).permute(0, 3, 1, 2).to(condition.dtype)
        return torch.cat([condition[:, :p], embedded, condition[:, p + 1 :]], dim=1)


def class_index_channel(channels: tuple[str, ...]) -> tuple[int, int] | None:
    """(position, K) of the condition's ``class_index:<K>`` channel, or None without one.

    Raises:
        InputError: more than one class-index channel.
    """
    from htd_core.types import CLASS_INDEX

    found = [(i, c) for i, c in enumerate(channels) if c.startswith(f"{CLASS_INDEX}:")]
    if len(found) > 1:
        from htd_core.errors import InputError

        raise InputError(
            f"the condition has {len(found)} class-index channels {[c for _, c in found]}: "
            "compose one crop_slots builder"
        )
    return (found[0][0], int(found[0][1].split(":", 1)[1])) if found else None


def class_embedding_for(channels: tuple[str, ...], embedding_dim: int) -> ClassEmbedding | None:
    """A fresh :class:`ClassEmbedding` for a condition with these channel names, or None when
    it has no ``class_index:<K>`` channel (see :func:`class_index_channel`)."""
    found = class_index_channel(channels)
    return None if found is None else ClassEmbedding(found[1], embedding_dim, found[0])


def build_unet(preset, in_channels: int, out_channels: int, latent_size: int):
    """The preset's ``UNet2DConditionModel`` for ``in_channels`` inputs."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        **preset.unet,
        in_channels=in_channels,
        out_channels=out_channels,
        sample_size=latent_size,
        cross_attention_dim=preset.cross_attention_dim,
    )


def build_token_encoder(preset, token_dim: int) -> TokenEncoder:
    return TokenEncoder(cross_attention_dim=preset.cross_attention_dim, token_dim=token_dim)
