"""Layouts: a large semantic map in the model's classes, at a known mpp.

Sources (:func:`htd_plugins.slide_synthesis.readers.read_layout`):

- a label-mask image (PNG/TIFF of integer codes, any size) with its mpp; codes are named by
  ``label_classes`` or a JSON sidecar ``<mask>.json`` (else they index the model's classes);
  a discovery pseudo map is such a mask whose sidecar gives the names and ``map_mpp``; a
  label-mask TIFF written by ``htd generate-slide`` carries its mpp in its resolution tags;
- QuPath GeoJSON or ASAP XML annotations (or a tiatoolbox store) rasterised at ``size`` px and
  ``mpp`` (coordinates are pixels of that canvas, e.g. drawn in QuPath on an empty image);
- a real slide's annotations: the same files with ``slide=``, coordinates in the slide's
  level-0 pixels, rasterised at ``mpp`` over ``region`` (default: the annotations' extent).

Every label must name a class of the model (``label_map`` renames, ``@ignore`` marks "don't
care"); pixels no annotation covers get ``fill`` (a class name or ``@ignore``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap

ANNOTATION_SUFFIXES = (".geojson", ".json", ".xml", ".db")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
IGNORE = "@ignore"
UNSET = 254  # painted where nothing is annotated, before ``fill`` decides


@dataclass
class SlideLayout:
    """A semantic map for one synthetic slide.

    Attributes:
        mask: uint8 H x W class indices of ``class_map`` (``ignore_index``: don't care).
        class_map: the model's classes.
        mpp: microns per pixel of ``mask``.
        info: what the layout came from, for the manifest (kind, sizes; no paths).
    """

    mask: np.ndarray
    class_map: ClassMap
    mpp: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    def rescaled(self, mpp: float) -> SlideLayout:
        """The layout resampled (nearest neighbour) to ``mpp``."""
        import cv2

        factor = self.mpp / float(mpp)
        h, w = self.size
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        mask = cv2.resize(self.mask, size, interpolation=cv2.INTER_NEAREST)
        return SlideLayout(
            mask, self.class_map, float(mpp), {**self.info, "rescaled_from_mpp": self.mpp}
        )


def check_mpp(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InputError(f"{what}={value!r}: give a positive resolution in um/px")
    if not math.isfinite(value):
        raise InputError(f"{what}={value!r}: give a finite resolution in um/px")
    return float(value)


def unknown_class_error(source: Path, unknown: Sequence[str], class_map: ClassMap) -> InputError:
    shown = ", ".join(repr(u) for u in sorted(unknown))
    return InputError(
        f"layout {source} has class(es) {shown} that the model does not know; the model's "
        f"classes are {list(class_map.names)}: rename them with label_map (--label-map "
        f"'{{\"{sorted(unknown)[0]}\": \"{class_map.names[0]}\"}}'), map them to '{IGNORE}', "
        "or use a model trained on them"
    )


def fill_value(fill: str | None, class_map: ClassMap) -> int | None:
    if fill is None:
        return None
    if fill == IGNORE:
        return class_map.ignore_index
    if fill not in class_map.names:
        raise InputError(
            f"fill={fill!r} is not a class of the model {list(class_map.names)} nor '{IGNORE}'"
        )
    return class_map.names.index(fill)


def class_index(name: str, names: Mapping[str, str], class_map: ClassMap) -> int | None:
    target = names.get(name, name)
    if target == IGNORE:
        return class_map.ignore_index
    return class_map.names.index(target) if target in class_map.names else None
