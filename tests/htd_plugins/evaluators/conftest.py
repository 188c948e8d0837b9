"""Shared test helpers for the evaluators: a tiny deterministic Encoder, a DeepLabv3+ training counter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from htd_core.interfaces import Encoder


class TinyEncoder(Encoder):
    """Average-pools to 4x4, projects the 48 values to ``embed_dim`` with a seeded matrix.

    ``calls`` counts images embedded, so tests can see whether a cache was used.
    """

    def __init__(
        self, embed_dim: int = 8, weights_id: str = "tiny-v1", seed: int = 0, name: str = "tiny"
    ) -> None:
        self.name = name
        self.embed_dim = embed_dim
        self.input_size = 16
        self.weights_id = weights_id
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(48, embed_dim, generator=g) / 7.0
        self.calls = 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += pixels.shape[0]
        pooled = F.adaptive_avg_pool2d(pixels, 4).flatten(1)
        return torch.tanh(pooled @ self.proj) * 3.0


@pytest.fixture
def tiny_encoder() -> type[TinyEncoder]:
    """The :class:`TinyEncoder` class (construct it with the options a test needs)."""
    return TinyEncoder


@pytest.fixture
def training_calls(monkeypatch) -> list[str]:
    """Every DeepLabv3+ training run, named by the module that asked: ``real`` (the shared real
    network, :mod:`.segmentation.real_model`) or ``other`` (a setting with synthetic data)."""
    from htd_plugins.evaluators import deeplabv3plus
    from htd_plugins.evaluators.segmentation import real_model

    calls: list[str] = []
    for module, what in ((real_model, "real"), (deeplabv3plus, "other")):

        def counting(*args, _train=module.train_model, _what=what, **kwargs):
            calls.append(_what)
            return _train(*args, **kwargs)

        monkeypatch.setattr(module, "train_model", counting)
    return calls
