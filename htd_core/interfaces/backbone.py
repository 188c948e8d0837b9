"""Backbone: a generative model trained on (sample, condition) pairs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.generation import GenerationOptions
from htd_core.interfaces.condition_builder import ConditionBuilder
from htd_core.types import ClassMap, Condition, TissueSample


class Backbone(ABC):
    """Learns p(image | condition) and samples from it.

    ``fit`` consumes samples and builds their conditions with ``builder``; ``generate`` takes
    prebuilt conditions (a null condition means unconditional) and the
    :class:`~htd_core.generation.GenerationOptions` of the call, whole: a backbone keeps no
    generation setting of its own (``Pipeline.generation_options`` decides them). Weights go
    to ``save`` / ``load`` folders that other tools (diffusers) can read part by part.

    Attributes:
        name: the registered name; ``save`` records it so a folder names its backbone.
        options: the constructor's options as a JSON-serialisable mapping (``save`` records
            them): what the model *is* (size, autoencoder, prediction type...), never how one
            call samples from it.
        class_map: the classes the model was trained on (None before ``fit`` or ``load``);
            generation refuses layouts of other classes.
        mpp: um/px of the training patches (None when unknown).
    """

    name: str = "backbone"
    options: dict[str, Any]
    class_map: ClassMap | None = None
    mpp: float | None = None

    @abstractmethod
    def fit(
        self, samples: Iterable[TissueSample], builder: ConditionBuilder, **options: Any
    ) -> dict[str, Any]:
        """Train; returns a summary (steps, final loss, output folder...).

        A backbone that trains by optimizer steps and is given a ``PatchSampler`` calls
        its ``for_step(sample, t)`` on every sample of the batch drawn at step ``t``.
        """

    @abstractmethod
    def generate(self, conditions: Sequence[Condition], options: GenerationOptions) -> np.ndarray:
        """Images N x H x W x 3 uint8, one per condition, sampled exactly as ``options`` say;
        image ``i`` depends only on ``options.seed + i`` and its condition, so a generation
        can resume part-way."""

    def check_generation(
        self, options: GenerationOptions, asked: frozenset[str] = frozenset()
    ) -> GenerationOptions:
        """The options this model samples with when given ``options`` (the default: as they
        are). Called once per call by ``Pipeline.generation_options``, never by ``generate``.

        Args:
            options: the resolved options.
            asked: the fields the caller gave explicitly (the rest are defaults): a backbone
                may refuse an impossible value asked for and fall back, with a warning, from
                a default it cannot honour (e.g. guidance on a model with no null branch).

        Raises:
            InputError: an option this backbone cannot honour (an unknown scheduler...).
        """
        return options

    def check_layout_size(self, height: int, width: int, what: str = "layout") -> None:
        """Refuse a layout size this model cannot generate at (the default: any size), before
        any image is made; :func:`htd_core.generation.check_layouts` calls it for each layout.

        Raises:
            InputError: naming ``what``, its size and a size the model can generate at.
        """
        return None

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 images passed through the model's autoencoder (encode, decode;
        same shape): the ceiling of what generation can reach (its reconstruction FD).

        Raises:
            NotImplementedError: the backbone has no autoencoder (the default).
        """
        raise NotImplementedError(f"backbone {self.name!r} has no autoencoder to reconstruct with")

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write weights and config to folder ``path`` (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, device: str | None = None) -> Backbone:
        """Read a folder written by :meth:`save` (on ``device``, default: the saved option).

        Raises:
            InputError: ``path`` is not such a folder, or holds another backbone's model.
        """
