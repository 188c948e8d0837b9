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

    def take(self, n: int) -> list[TissueSample]:
        """The first ``n`` samples."""
        return list(itertools.islice(iter(self), n))
