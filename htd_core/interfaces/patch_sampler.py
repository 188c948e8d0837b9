"""PatchSampler: yields TissueSamples from slides, pseudo maps or tile folders."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator

from htd_core.types import ClassMap, TissueSample


class PatchSampler(ABC):
    """An iterable of :class:`TissueSample` sharing one :class:`ClassMap`.

    Iterating twice with the same options yields the same samples (seeded), so datasets are
    reproducible and interrupted exports can resume by index.
    """

    @property
    @abstractmethod
    def class_map(self) -> ClassMap:
        """The classes every yielded sample's mask indexes."""

    @abstractmethod
    def __iter__(self) -> Iterator[TissueSample]:
        """Yield samples in a deterministic order."""

    def for_step(self, sample: TissueSample, step: int) -> TissueSample:
        """``sample`` as trained at optimizer step ``step`` (default: unchanged).

        A trainer given this sampler materialises its samples once, then calls this on every
        sample of the batch it draws at step ``step`` (0-based, the same on every process).
        A sampler whose output follows training progress overrides it, e.g. the
        ``curriculum`` sampler re-expresses a mask at the granularity of that step. It must
        depend only on ``(sample, step)``, so a resumed run sees the same batches.
        """
        return sample

    def expected_samples(self) -> int | None:
        """How many samples iterating will yield, when the sampler knows it without reading
        pixels (None: unknown). ``htd sample`` shows it as its progress total and ETA."""
        return None

    def take(self, n: int) -> list[TissueSample]:
        """The first ``n`` samples."""
        return list(itertools.islice(iter(self), n))
