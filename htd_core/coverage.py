"""Which classes a set of samples covers: a class with no pixel anywhere is named, not trained.

A class of the class list that no sample holds (``necrosis`` listed, never annotated) would
train an always-empty condition channel in silence. ``htd sample`` checks the dataset it
wrote and :meth:`htd_core.Pipeline.fit` (``htd train``) the samples it trained on; each empty
class is one :class:`EmptyClassWarning` naming it and its counts. Samples given to ``fit`` in
place of a sampler with a per-step schedule (the curriculum) are one warning too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from htd_core.types import TissueSample


class EmptyClassWarning(UserWarning):
    """A class of the class list has no pixel in any sample."""


def warn_empty_classes(pixels: Mapping[str, float], n_samples: int, where: str) -> list[str]:
    """Warn once per class whose pixel count (or summed fraction) is 0; returns their names.

    Args:
        pixels: class name -> pixels (or summed area fractions) over all samples.
        n_samples: how many samples were counted.
        where: names the samples in the message (``"dataset out/"``, ``"training samples"``).
    """
    empty = [name for name, value in pixels.items() if not value > 0]
    if not n_samples:
        return []
    for name in empty:
        warnings.warn(
            f"{where}: class {name!r} has no region in any of the {n_samples} samples (0 px in "
            f"0 of {n_samples}); its condition channel would always be empty: annotate it, or "
            "drop it from the class list",
            EmptyClassWarning,
            stacklevel=3,
        )
    return empty


class ClassCoverage:
    """Counts class pixels of the samples an iterable yields, as they are consumed.

    ``iter(coverage)`` passes the samples through unchanged; when they are exhausted (or at
    :meth:`report`, for a consumer that stopped early) classes with no pixel are warned about
    once.
    """

    def __init__(self, samples: Iterable[TissueSample], where: str) -> None:
        self.samples, self.where = samples, where
        self.pixels: dict[str, int] = {}
        self.count = 0
        self._reported = False

    @property
    def for_step(self) -> Callable[[TissueSample, int], TissueSample] | None:
        """The wrapped samples' per-step hook (:meth:`htd_core.PatchSampler.for_step`), so a
        curriculum still follows the training step through this pass-through; None: none."""
        return getattr(self.samples, "for_step", None)

    def __iter__(self) -> Iterator[TissueSample]:
        for sample in self.samples:
            names = sample.class_map.names
            codes = np.asarray(sample.mask).ravel()
            counts = np.bincount(codes[codes < len(names)].astype(np.int64), minlength=len(names))
            for name, n in zip(names, counts, strict=True):
                self.pixels[name] = self.pixels.get(name, 0) + int(n)
            self.count += 1
            yield sample
        self.report()

    def report(self) -> list[str]:
        """Warn (once) about the classes with no pixel so far; returns their names."""
        if self._reported:
            return []
        self._reported = True
        return warn_empty_classes(self.pixels, self.count, self.where)


def warn_dropped_schedule(sampler: Any, samples: Any) -> None:
    """One line when explicit ``samples`` replace a sampler whose ``for_step`` (a per-step
    schedule: the curriculum's granularity) a trainer would have applied."""
    from htd_core.interfaces import PatchSampler

    def schedule(obj: Any) -> str | None:
        hook = getattr(type(obj), "for_step", None)
        keeps = isinstance(obj, PatchSampler) and hook is not PatchSampler.for_step
        return f"{type(obj).__name__}.for_step" if keeps else None

    dropped = schedule(sampler)
    if dropped and samples is not sampler and not schedule(samples):
        warnings.warn(
            f"Pipeline.fit: explicit samples are trained as they are, so the pipeline sampler's "
            f"per-step schedule ({dropped}, e.g. the curriculum's coarse-to-fine class maps) is "
            "ignored: call fit() without samples to train on the sampler with its schedule, or "
            "pass a sampler with the schedule as samples",
            UserWarning,
            stacklevel=3,
        )
