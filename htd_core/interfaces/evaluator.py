"""Evaluator: a streaming metric over real and synthetic samples (MONAI's lifecycle)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from htd_core.types import TissueSample


class Evaluator(ABC):
    """Accumulate with :meth:`update`, answer with :meth:`aggregate`, forget with :meth:`reset`.

    ``update`` may be called many times with batches of real and/or synthetic samples;
    ``aggregate`` returns JSON-serialisable metrics (figures go to ``output_dir`` if given).
    """

    name: str = "evaluator"

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abstractmethod
    def update(
        self,
        *,
        real: Sequence[TissueSample] | None = None,
        synthetic: Sequence[TissueSample] | None = None,
    ) -> None:
        """Add a batch of real and/or synthetic samples."""

    @abstractmethod
    def aggregate(self) -> dict[str, Any]:
        """Metrics over everything seen since the last reset."""

    def evaluate(
        self, real: Sequence[TissueSample], synthetic: Sequence[TissueSample]
    ) -> dict[str, Any]:
        """One-shot convenience: reset, update once, aggregate."""
        self.reset()
        self.update(real=real, synthetic=synthetic)
        return self.aggregate()
