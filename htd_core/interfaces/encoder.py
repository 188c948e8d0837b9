"""Encoder: a foundation model mapping uint8 RGB patches to feature vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from htd_core import thread_governor
from htd_core.errors import InputError


class Encoder(ABC):
    """Feature extractor with declared preprocessing.

    Subclasses set ``name``, ``embed_dim``, ``input_size``, ``mean``, ``std`` and
    ``weights_id`` (a content hash of the weights file, or ``"random"``) and implement
    :meth:`forward`. Calling the encoder on uint8 N x H x W x 3 images resizes them (bilinear,
    antialiased) to ``input_size``, normalises, and returns float32 N x ``embed_dim`` features
    in batches under ``torch.inference_mode``.
    """

    name: str = "encoder"
    embed_dim: int = 0
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    weights_id: str = "random"
    device: torch.device = torch.device("cpu")

    @property
    def is_random(self) -> bool:
        """True when the weights are a random initialisation (numbers must say so)."""
        return self.weights_id == "random"

    @property
    def label(self) -> str:
        """Name for reports, marked when the weights are random."""
        return f"{self.name} (RANDOM WEIGHTS)" if self.is_random else self.name

    def check_finite(self, features: np.ndarray | torch.Tensor, what: str) -> None:
        """Refuse features holding NaN or inf (broken or mismatched weights), naming this
        encoder and its weights file (``weights_path`` where the encoder has one).

        Raises:
            InputError: how many of the rows of ``what`` are not finite, the encoder, the file.
        """
        x = torch.as_tensor(features)
        bad = int((~torch.isfinite(x).reshape(len(x), -1).all(dim=1)).sum()) if len(x) else 0
        if bad:
            weights = getattr(self, "weights_path", None) or f"weights id {self.weights_id}"
            raise InputError(
                f"encoder {self.label} gave NaN or inf features for {bad} of {len(x)} {what} "
                f"(weights: {weights}): check that the weights file is whole and of this "
                "architecture"
            )

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features N x embed_dim of preprocessed float pixels N x 3 x S x S."""

    def to(self, device: str | torch.device) -> Encoder:
        """Move the model to ``device``; subclasses with modules override and call super."""
        self.device = torch.device(device)
        return self

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 N x H x W x 3 -> normalised float N x 3 x S x S on the encoder's device."""
        x = self.unit_pixels(images)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = self.resize_pixels(x)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def unit_pixels(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Validate uint8 N x H x W x 3 (or one H x W x 3) -> float N x 3 x H x W in [0, 1]."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise InputError(
                f"{self.name}: expected uint8 images N x H x W x 3, got {x.dtype} {tuple(x.shape)}"
            )
        return x.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)

    def resize_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Resize N x 3 x H x W to ``input_size`` (bilinear, antialiased); override to change."""
        size = (self.input_size, self.input_size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    def __call__(
        self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray], batch_size: int = 64
    ) -> torch.Tensor:
        if isinstance(images, list | tuple):
            images = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)
        n = len(images)
        if n == 0:
            return torch.zeros((0, self.embed_dim))
        out = []
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                feats = self.forward(self.preprocess(images[start : start + batch_size]))
                out.append(feats.float().cpu())
                thread_governor.tick(len(feats), "embed")
        feats = torch.cat(out)
        if feats.shape != (n, self.embed_dim):
            raise InputError(
                f"{self.name} returned features {tuple(feats.shape)}, expected ({n}, {self.embed_dim})"
            )
        self.check_finite(feats, "images")
        return feats
