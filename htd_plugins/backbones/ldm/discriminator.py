"""The optional adversarial term of the KL autoencoder's training (:mod:`.autoencoder_training`).

As the latent diffusion autoencoders (Rombach et al. 2022, ``ldm/modules/losses/
contperceptual.py``), after Esser et al. 2021 (taming-transformers' ``NLayerDiscriminator`` and
``hinge_d_loss``): a PatchGAN discriminator (Isola et al. 2017) judges overlapping patches of
real and reconstructed crops with a hinge loss; the autoencoder adds ``-mean(logits)`` of its
reconstructions, times an adaptive weight (the ratio of the gradient norms of the
reconstruction loss and of that term at the decoder's last layer, clamped to [0, 1e4]) times
the user's weight. The adaptive weight keeps the term on the reconstruction's scale whatever
that scale is (our losses are means, LDM's sums), so one user weight (LDM: 0.5) fits every
preset. No pretrained network is used (LDM's LPIPS term is left out).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from htd_core.errors import InputError


class PatchDiscriminator(nn.Module):
    """taming-transformers' ``NLayerDiscriminator`` with GroupNorm instead of BatchNorm.

    Conv 4x4 stride 2 + LeakyReLU(0.2), then ``n_layers - 1`` conv 4x4 stride 2 + norm +
    LeakyReLU with doubling channels (at most 8 x ``channels``), one such conv at stride 1, and
    a 4x4 conv to one logit per patch. GroupNorm, not BatchNorm: real and reconstructed batches
    go through separately, and BatchNorm would normalise each with its own statistics (and fail
    on a 1 x 1 map of batch size 1); GroupNorm is per sample, so a logit depends only on its
    own crop, train and eval behave alike, and there are no running statistics to checkpoint.

    Input: float N x C x H x W (the autoencoder's range, [-1, 1]); output: float N x 1 x h x w
    logits (h = :func:`patch_map_size` (H, n_layers)).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            width = channels * mult
            layers += [
                nn.Conv2d(channels * prev, width, 4, 2 if n < n_layers else 1, 1, bias=False),
                nn.GroupNorm(math.gcd(32, width), width),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def patch_map_size(size: int, n_layers: int) -> int:
    """Side of :class:`PatchDiscriminator`'s logit map for an input of side ``size`` pixels."""
    for _ in range(n_layers):
        size = (size - 2) // 2 + 1  # conv 4x4, stride 2, padding 1
    return size - 2  # two convs 4x4, stride 1, padding 1


def build_discriminator(crop: int, seed: int = 0, n_layers: int = 3) -> PatchDiscriminator:
    """A seeded :class:`PatchDiscriminator` for ``crop`` px crops; weights as pix2pix's
    ``init_weights('normal')``: convs N(0, 0.02), norm scales N(1, 0.02), biases 0.

    ``n_layers`` is lowered to the most that leaves a logit map of at least 2 x 2 (3 for the
    ``small`` preset's 32 px crops, 2 for 16 px, 1 for 8 px). Raises InputError when ``crop``
    is under 8 px.
    """
    layers = max((n for n in range(1, n_layers + 1) if patch_map_size(crop, n) >= 2), default=0)
    if layers == 0:
        raise InputError(f"the adversarial term needs crops of at least 8 px; they are {crop}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.default_rng([seed, 4099]).integers(2**62)))
        net = PatchDiscriminator(n_layers=layers)
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.GroupNorm):
                nn.init.normal_(m.weight, 1.0 if isinstance(m, nn.GroupNorm) else 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return net


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 (mean relu(1 - real) + mean relu(1 + fake)) of logit maps (taming's hinge_d_loss)."""
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def adaptive_weight(
    reconstruction: torch.Tensor, generator: torch.Tensor, last_layer: torch.Tensor
) -> torch.Tensor:
    """||d reconstruction / d last_layer|| / (||d generator / d last_layer|| + 1e-4), clamped
    to [0, 1e4] and detached (LDM's ``calculate_adaptive_weight``); both losses are scalars."""
    (rec,) = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)
    (gen,) = torch.autograd.grad(generator, last_layer, retain_graph=True)
    return (rec.norm() / (gen.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class Adversary:
    """The discriminator of one autoencoder training run: its optimizer (Adam, betas (0.5, 0.9) as
    LDM's), schedule (from step ``start``) and losses; its state goes in the checkpoint."""

    def __init__(
        self, crop: int, *, weight: float, start: int, learning_rate: float, seed: int, device
    ) -> None:
        self.weight, self.start = weight, start
        self.net = build_discriminator(crop, seed=seed).to(device).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=learning_rate, betas=(0.5, 0.9))
        self.losses: list[float] = []
        self.last_weight: float | None = None

    def generator_term(
        self, recon: torch.Tensor, reconstruction: torch.Tensor, last_layer: torch.Tensor
    ) -> torch.Tensor:
        """weight x adaptive weight x -mean(logits of ``recon``): the autoencoder's extra loss
        (the discriminator is frozen for it)."""
        self.net.requires_grad_(False)
        generator = -self.net(recon).mean()
        self.net.requires_grad_(True)
        scale = self.weight * adaptive_weight(reconstruction, generator, last_layer)
        self.last_weight = float(scale)
        return scale * generator

    def update(self, real: torch.Tensor, recon: torch.Tensor) -> None:
        """One hinge-loss step of the discriminator on real and reconstructed crops."""
        loss = hinge_discriminator_loss(self.net(real.detach()), self.net(recon.detach()))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.losses.append(float(loss.detach()))

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.net.state_dict(),
            "discriminator_optimizer": self.opt.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Restore from a checkpoint of step ``step``. Raises InputError when it has no
        discriminator although one would have trained before ``step``."""
        if "discriminator" in state:
            self.net.load_state_dict(state["discriminator"])
            self.opt.load_state_dict(state["discriminator_optimizer"])
        elif step > self.start:
            raise InputError(
                f"the autoencoder checkpoint (step {step}) was written without the adversarial "
                f"term, which starts at step {self.start}: delete the checkpoint, or set "
                f"adversarial_start >= {step}"
            )

    def summary(self) -> dict[str, Any]:
        return {
            "final_discriminator_loss": float(np.mean(self.losses[-10:])) if self.losses else None,
            "final_adversarial_weight": self.last_weight,
        }
