"""The condition of every window: its part of the layout, and one real crop per class.

Each window is a layout sample (no image) of the model's window size, cut from the slide's
layout at the window's pixel position; the pipeline's condition builders turn it into the
condition the model was trained on. Crops come from the builders' crop bank:

- ``crops="window"``: window ``i`` is built with seed ``seed + i``, so each window draws its
  own crop per class (reproducibly);
- ``crops="region"``: every connected region of a class gets one crop, drawn with the seed
  and the region's number; a window uses, per class, the crop of that class's region that
  covers most of the window, so a region keeps one texture across all windows it spans.
  The region map costs 4 bytes per layout pixel.

Conditions are rebuilt when needed (they are a deterministic function of the window and the
seed) rather than kept: the spatial conditions of all windows would take far more memory
than the latent canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from htd_core.config import spec_of
from htd_core.errors import InputError
from htd_core.interfaces import ComposedConditionBuilder, ConditionBuilder
from htd_core.registry import accepted_options
from htd_core.types import CROP_PROVENANCE, Condition, TissueSample

CROP_MODES = ("window", "region")
#: Provenance keys copied to the manifest (all opaque or geometric; nothing else passes).
PROVENANCE_KEYS = (
    "source",
    "slide_id",
    "x",
    "y",
    "size",
    "mpp",
    "placed_x",
    "placed_y",
    "placed_size",
    "empty",
)


class WindowConditions:
    """Builds window ``i``'s condition (module doc).

    Args:
        builder: the pipeline's condition builder (one, or composed).
        mask: uint8 H x W layout in the model's classes (``class_map`` indices).
        class_map: the model's classes.
        mpp: um/px of the layout (given to builders as the windows' ``meta['mpp']``).
        positions: (y, x) pixel start of every window.
        window: window side in pixels.
        seed: base seed.
        crops: ``window`` or ``region``.
        registry: the condition-builder registry that re-creates a builder with a window's
            bank (``region`` mode; default: the process-wide one).
    """

    def __init__(
        self,
        builder: ConditionBuilder,
        mask: np.ndarray,
        class_map: Any,
        mpp: float,
        positions: Sequence[tuple[int, int]],
        window: int,
        seed: int,
        crops: str = "window",
        registry: Any = None,
    ) -> None:
        if crops not in CROP_MODES:
            raise InputError(f"crops={crops!r}: use one of {list(CROP_MODES)}")
        self.builder, self.mask, self.class_map, self.mpp = builder, mask, class_map, float(mpp)
        self.positions, self.window, self.seed, self.crops = (
            list(positions),
            int(window),
            int(seed),
            crops,
        )
        self.registry = registry
        self.parts = (
            list(builder.builders) if isinstance(builder, ComposedConditionBuilder) else [builder]
        )
        self.banked = [i for i, p in enumerate(self.parts) if _takes_bank(p)]
        self.regions: np.ndarray | None = None
        self.region_class: np.ndarray | None = None
        self._region_crops: dict[int, Any] = {}
        if crops == "region":
            if not any(getattr(self.parts[i], "bank", None) is not None for i in self.banked):
                from htd_plugins.condition_builders import MissingCropError

                raise MissingCropError(
                    "crops='region' needs a crop bank in the condition builders (bank=...); "
                    "this pipeline has none"
                )
            self.regions, self.region_class = connected_regions(mask, len(class_map))

    def __len__(self) -> int:
        return len(self.positions)

    def sample(self, index: int) -> TissueSample:
        """Window ``index`` as a layout sample (no image)."""
        y, x = self.positions[index]
        part = self.mask[y : y + self.window, x : x + self.window]
        meta = {"mpp": self.mpp, "slide_id": "synthetic", "window": index, "x": x, "y": y}
        return TissueSample(None, np.ascontiguousarray(part), self.class_map, meta)

    def build(self, index: int) -> Condition:
        """The condition of window ``index``."""
        sample = self.sample(index)
        seed = self.seed + index
        if self.crops == "window" or not self.banked:
            return self.builder.build(sample, seed=seed)
        parts = list(self.parts)
        for i in self.banked:
            if getattr(parts[i], "bank", None) is not None:
                parts[i] = self._with_bank(parts[i], self._window_bank(index, parts[i].bank))
        return ComposedConditionBuilder(parts).build(sample, seed=seed)

    def provenance(self, index: int) -> dict[str, Any]:
        """Per class, where window ``index``'s crop came from (opaque ids only)."""
        return clean_provenance(self.build(index).meta.get(CROP_PROVENANCE) or {})

    # -- region mode ------------------------------------------------------------------------
    def _with_bank(self, part: ConditionBuilder, bank: Any) -> ConditionBuilder:
        """The same registered builder with another crop bank (re-created from its spec)."""
        from htd_core.plugins import get_registry

        spec = spec_of(part, "condition builder")
        registry = self.registry or get_registry("condition_builders")
        return registry.create(spec.name, **{**spec.options, "bank": bank})

    def _window_bank(self, index: int, bank: Any) -> Any:
        """A bank holding, per class in the window, the crop of its dominant region."""
        from htd_plugins.condition_builders import CropBank

        y, x = self.positions[index]
        ids = self.regions[y : y + self.window, x : x + self.window].ravel()
        counts = np.bincount(ids)
        chosen: dict[str, list[Any]] = {}
        for region in np.argsort(-counts, kind="stable"):
            if counts[region] == 0:
                break
            if region == 0:
                continue
            name = self.class_map.names[int(self.region_class[region])]
            if name not in chosen:
                chosen[name] = [self._region_crop(int(region), name, bank)]
        return CropBank(chosen)

    def _region_crop(self, region: int, name: str, bank: Any) -> Any:
        if region not in self._region_crops:
            rng = np.random.default_rng([self.seed, 1, region])
            self._region_crops[region] = bank.draw(name, rng)
        return self._region_crops[region]


def connected_regions(mask: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """int32 map of connected regions (8-connectivity, one class each; 0 = ignored pixels)
    and the class of every region number (index 0 unused)."""
    import cv2

    regions = np.zeros(mask.shape, np.int32)
    classes = [0]
    for k in range(num_classes):
        n, labels = cv2.connectedComponents((mask == k).astype(np.uint8), connectivity=8)
        if n > 1:
            inside = labels > 0
            regions[inside] = labels[inside] + (len(classes) - 1)
            classes.extend([k] * (n - 1))
    return regions, np.asarray(classes, np.int64)


def clean_provenance(prov: dict[str, Any]) -> dict[str, Any]:
    """Keep only the opaque and geometric keys of each class's crop provenance."""
    return {
        name: None if p is None else {k: p[k] for k in PROVENANCE_KEYS if k in p}
        for name, p in prov.items()
    }


def _takes_bank(part: ConditionBuilder) -> bool:
    allowed = accepted_options(type(part))
    return allowed is None or "bank" in allowed
