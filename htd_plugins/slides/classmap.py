"""The low-resolution class map of a slide: tissue mask + label mask + polygons on one grid.

The grid's cells are ``cell_px`` x ``cell_px`` pixels at the read resolution. Patches and
strides are whole numbers of cells, so a patch's mask is its block of cells repeated
``cell_px`` times: the composition decided on the grid is exactly the exported mask's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap
from htd_plugins.slides.wsi import Slide


@dataclass(frozen=True)
class SlideGrid:
    """Read resolution and class-map cells of one slide.

    Attributes:
        mpp: read resolution (um/px); base_mpp: the slide's level-0 resolution.
        width, height: slide size in pixels at ``mpp``.
        cell_px: pixels at ``mpp`` per class-map cell side.
    """

    mpp: float
    base_mpp: float
    width: int
    height: int
    cell_px: int

    @property
    def scale(self) -> float:
        """Level-0 pixels per pixel at ``mpp``."""
        return self.mpp / self.base_mpp

    @property
    def cell_size(self) -> float:
        """Level-0 pixels per cell side."""
        return self.cell_px * self.scale

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the class map."""
        return math.ceil(self.height / self.cell_px), math.ceil(self.width / self.cell_px)

    def to_level0(self, x: int, y: int) -> tuple[int, int]:
        return round(x * self.scale), round(y * self.scale)


@dataclass
class ClassMapSpec:
    """How to turn a slide's annotations into a class map (the samplers' options).

    Attributes:
        class_map: classes (``background`` included when ``background="class"``).
        annotations: polygon files (GeoJSON, ASAP XML, tiatoolbox .db).
        label_mask: label-mask image, or None.
        label_classes: names of the mask's codes (see :mod:`label_masks`).
        label_colors: class -> colour of a mask painted in colours, or ``red`` (PANDA).
        label_map: annotation label -> class name / ``@ignore`` / ``@hole``.
        unknown_labels: ``error`` or ``ignore`` for labels/codes that name no class.
        unannotated: ``ignore`` or a class name for tissue that no annotation covers.
        background: ``ignore`` or ``class`` for cells outside the tissue mask.
        tissue: tissue masker (``morphological``, ``otsu``, ``none``).
        precedence: ``area`` or class names bottom-first (overlapping polygons).
        annotation_scale: factor applied to polygon coordinates.
    """

    class_map: ClassMap
    annotations: Sequence[Path] = ()
    label_mask: Path | None = None
    label_classes: Any = None
    label_colors: Any = None
    label_map: Mapping[str, str] | None = None
    unknown_labels: str = "error"
    unannotated: str = "ignore"
    background: str = "ignore"
    tissue: str = "morphological"
    precedence: str | Sequence[str] = "area"
    annotation_scale: float = 1.0
    labels_seen: dict[str, int] = field(default_factory=dict)

    def index_of(self, option: str, value: str) -> int:
        """Class index of ``ignore``/a class name for the unannotated/background options."""
        if value == "ignore":
            return self.class_map.ignore_index
        if value == "class" and option == "background":
            return self.class_map.names.index("background")
        if value in self.class_map.names:
            return self.class_map.names.index(value)
        raise InputError(
            f"{option}={value!r}: use 'ignore' or one of the classes {list(self.class_map.names)}"
            + (" (or 'class' to add a background class)" if option == "background" else "")
        )


def build_class_map(
    slide: Slide, grid: SlideGrid, spec: ClassMapSpec
) -> tuple[np.ndarray, np.ndarray]:
    """The slide's class map (uint8 cells, ignore index where unknown) and tissue mask.

    Order: tissue mask -> unannotated/background values -> label mask -> polygons.
    Warns (and returns an all-ignore map) when the slide has no tissue.
    """
    from htd_plugins.slides.annotation_files import open_store, store_labels
    from htd_plugins.slides.annotations import LabelResolver, check_bounds, paint_store
    from htd_plugins.slides.label_masks import (
        NO_LABEL,
        code_lut,
        color_code_names,
        load_code_names,
        mask_to_grid,
        read_label_mask,
    )
    from htd_plugins.slides.tissue import resize_nearest, tissue_mask

    cm = spec.class_map
    unannotated = spec.index_of("unannotated", spec.unannotated)
    background = spec.index_of("background", spec.background)
    thumb_mpp = grid.mpp * grid.cell_px
    if spec.tissue == "none":
        tissue = np.ones(grid.shape, bool)
    else:
        thumb = slide.thumbnail(thumb_mpp)
        tissue = resize_nearest(tissue_mask(thumb, thumb_mpp, spec.tissue), grid.shape)
    cells = np.where(tissue, unannotated, background).astype(np.uint8)
    if not tissue.any():
        warnings.warn(
            f"slide {slide.path}: no tissue found (tissue={spec.tissue!r}); it yields no patches",
            stacklevel=2,
        )
        return np.full(grid.shape, cm.ignore_index, np.uint8), tissue
    if spec.label_mask is not None:
        mask = read_label_mask(spec.label_mask, spec.label_colors, spec.unknown_labels)
        names, downsample = load_code_names(spec.label_classes, spec.label_mask)
        names = color_code_names(spec.label_colors) or names
        lut = code_lut(mask, names, cm, spec.unknown_labels, str(spec.label_mask))
        codes = mask_to_grid(
            mask, grid.shape, grid.cell_size, slide.dimensions, downsample, str(spec.label_mask)
        )
        values = lut[np.clip(codes, 0, len(lut) - 1)]
        labelled = values != NO_LABEL
        is_class = labelled & (values != cm.ignore_index)
        cells[is_class & tissue] = values[is_class & tissue]
        cells[labelled & ~is_class] = cm.ignore_index
    if spec.annotations:
        resolver = LabelResolver(cm, spec.label_map, spec.unknown_labels)
        for path in spec.annotations:
            with open_store(path, spec.annotation_scale) as store:
                labels = store_labels(store)
                resolver.check(labels, str(path))
                check_bounds(store, slide.dimensions, str(path))
                paint_store(
                    store, cells, grid.cell_size, resolver, tissue, unannotated, spec.precedence
                )
                for lab, n in labels.items():
                    spec.labels_seen[lab] = spec.labels_seen.get(lab, 0) + n
    return cells, tissue
