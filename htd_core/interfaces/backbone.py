"""Backbone: a generative model trained on (sample, condition) pairs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.interfaces.condition_builder import ConditionBuilder
from htd_core.types import Condition, TissueSample


class Backbone(ABC):
    """Learns p(image | condition) and samples from it.

    ``fit`` consumes samples and builds their conditions with ``builder``; ``generate`` takes
    prebuilt conditions (a null condition means unconditional). Weights go to ``save`` /
    ``load`` folders that other tools (diffusers) can read part by part.
    """

    @abstractmethod
    def fit(
        self, samples: Iterable[TissueSample], builder: ConditionBuilder, **options: Any
    ) -> dict[str, Any]:
        """Train; returns a summary (steps, final loss, output folder...)."""

    @abstractmethod
    def generate(
        self, conditions: Sequence[Condition], *, seed: int = 0, **options: Any
    ) -> np.ndarray:
        """Images N x H x W x 3 uint8, one per condition, deterministic for a seed."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write weights and config to folder ``path`` (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Backbone:
        """Read a folder written by :meth:`save`."""
