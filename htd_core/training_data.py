"""The one interface of training data: a list of samples in memory, or shards read as a stream.

A trainer asks for the samples of a micro-batch by its address, never by iterating::

    data.take(micro_index, count, rank, world, seed) -> [(key, TissueSample), ...]

``micro_index`` counts the micro-batches a process has drawn (``step * accumulation +
micro``), so the samples of any step are a pure function of ``(seed, step, process)``: a run
resumed from the checkpoint of step ``s`` draws exactly the samples an uninterrupted run drew
after ``s``. :class:`SampleList` (small sets, the default) draws from seeded epoch permutations
of the whole list, interleaved over the processes; :class:`htd_core.shards.ShardDataset`
(:mod:`htd_core.shards`) gives each process its own shards and reads them as a stream, with
memory flat in the number of samples.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from htd_core.types import ClassMap, TissueSample


class TrainingData(ABC):
    """Samples addressed by micro-batch (see the module docstring).

    Attributes:
        class_map: the classes of every sample.
    """

    class_map: ClassMap
    #: True when the samples are read as they are needed (never all held in memory).
    streamed: bool = False

    @abstractmethod
    def __len__(self) -> int:
        """The number of samples."""

    @abstractmethod
    def take(
        self, micro_index: int, count: int, rank: int, world: int, seed: int
    ) -> list[tuple[str, TissueSample]]:
        """The ``count`` samples of micro-batch ``micro_index`` of process ``rank`` of
        ``world``, each with its key (unique in the data). Deterministic in its arguments."""

    @abstractmethod
    def spread(self, count: int) -> list[TissueSample]:
        """Up to ``count`` samples spread over the data (the autoencoder's training images,
        the pictures of TensorBoard, the median mpp), in a fixed order."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A content hash (a resumed run must see the same data)."""

    @abstractmethod
    def class_pixels(self) -> Mapping[str, float]:
        """Pixels of each class over all samples (empty classes are warned about)."""

    @abstractmethod
    def median_mpp(self) -> float | None:
        """The median ``meta['mpp']`` of the samples (None when none records it)."""


class SampleList(TrainingData):
    """Training samples held in memory: every process draws from seeded epoch permutations of
    the whole list (``stream_indices``), micro-batches interleaved over the processes."""

    def __init__(self, samples: Sequence[TissueSample]) -> None:
        self.samples = list(samples)
        self.class_map = self.samples[0].class_map

    def __len__(self) -> int:
        return len(self.samples)

    def __str__(self) -> str:
        return f"{len(self)} samples in memory"

    def __getitem__(self, i: int) -> TissueSample:
        return self.samples[i]

    def __iter__(self) -> Iterator[TissueSample]:
        return iter(self.samples)

    def take(
        self, micro_index: int, count: int, rank: int, world: int, seed: int
    ) -> list[tuple[str, TissueSample]]:
        position = (micro_index * world + rank) * count
        return [(str(i), self.samples[i]) for i in stream_indices(len(self), position, count, seed)]

    def spread(self, count: int) -> list[TissueSample]:
        picks = np.unique(np.linspace(0, len(self) - 1, min(count, len(self))).round())
        return [self.samples[int(i)] for i in picks]

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for s in self.samples:
            h.update(np.ascontiguousarray(s.image).tobytes())
            h.update(np.ascontiguousarray(s.mask).tobytes())
        return h.hexdigest()[:16]

    def class_pixels(self) -> Mapping[str, float]:
        names = self.class_map.names
        total = np.zeros(len(names), np.int64)
        for s in self.samples:
            codes = np.asarray(s.mask).ravel()
            total += np.bincount(codes[codes < len(names)].astype(np.int64), minlength=len(names))
        return dict(zip(names, total.tolist(), strict=True))

    def median_mpp(self) -> float | None:
        values = [float(s.meta["mpp"]) for s in self.samples if s.meta.get("mpp") not in (None, "")]
        return float(np.median(values)) if values else None


def stream_indices(num_samples: int, start: int, count: int, seed: int) -> list[int]:
    """Positions ``start .. start+count-1`` of an endless stream of seeded epoch permutations
    of ``range(num_samples)``."""
    perms: dict[int, np.ndarray] = {}
    out = []
    for pos in range(start, start + count):
        epoch, offset = divmod(pos, num_samples)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, 7919, epoch]).permutation(num_samples)
        out.append(int(perms[epoch][offset]))
    return out
