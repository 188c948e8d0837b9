"""Polygon annotations painted onto a slide's class-map grid.

The class map is rasterised tile by tile from spatial queries of the annotation store
(:mod:`annotation_files`), so a slide with hundreds of thousands of polygons never holds them
all in memory. ``label_map`` renames labels to class names, or to ``@ignore`` (don't care) or
``@hole`` (cut out: back to unannotated tissue); a CAMELYON16 ``_2`` group is a hole unless
mapped otherwise. A label that names no class, with ``unknown_labels="ignore"``, drops its
polygon: it is not painted at all. A cell belongs to a polygon when its centre lies inside it
(a MultiPolygon: inside any of its parts, whatever their order).

Precedence where polygons overlap: class polygons first (larger under smaller for
``precedence="area"``, or in the order of a class list, later on top); then ``@ignore`` and
hole polygons, larger first, each applied only where the class polygon shown is larger than
itself: a hole cuts the region it lies in, never a smaller region drawn inside it. Ties are
broken by class and position, so the map does not depend on the order of the file's features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap
from htd_plugins.slides.annotation_files import label_of

HOLE = -1  # resolver value: cut out of the polygons below
IGNORE_LABEL = "@ignore"
HOLE_LABEL = "@hole"
DEFAULT_LABEL_MAP = {"_2": HOLE_LABEL}  # CAMELYON16 exclusion group
_TILE_CELLS = 2048  # rasterise the grid in tiles of this many cells per side
_SHIFT = 4  # OpenCV sub-pixel bits


class LabelResolver:
    """Annotation label -> class index, ignore index or :data:`HOLE`.

    Args:
        class_map: the sampler's classes.
        label_map: label -> class name, ``@ignore`` or ``@hole`` (applied before class names).
        unknown: ``error`` (raise listing the labels) or ``ignore`` (paint the ignore index).
    """

    def __init__(
        self, class_map: ClassMap, label_map: Mapping[str, str] | None, unknown: str
    ) -> None:
        if unknown not in ("error", "ignore"):
            raise InputError(f"unknown_labels={unknown!r}: use 'error' or 'ignore'")
        self.class_map, self.unknown = class_map, unknown
        self.label_map = {
            **DEFAULT_LABEL_MAP,
            **{str(k): str(v) for k, v in (label_map or {}).items()},
        }
        for label, target in self.label_map.items():
            if target not in (IGNORE_LABEL, HOLE_LABEL, *class_map.names) and label in (
                label_map or {}
            ):
                raise InputError(
                    f"label_map maps {label!r} to {target!r}, which is not a class "
                    f"{list(class_map.names)} nor '@ignore' / '@hole'"
                )

    def resolve(self, label: str) -> int | None:
        """Index for ``label``; None when unknown (see :meth:`check`)."""
        target = self.label_map.get(label, label)
        if target == HOLE_LABEL and label not in self.class_map.names:
            return HOLE
        if target == IGNORE_LABEL:
            return self.class_map.ignore_index
        if target in self.class_map.names:
            return self.class_map.names.index(target)
        return None

    def check(self, labels: Mapping[str, int], source: str) -> None:
        """Raise (or accept, for ``unknown="ignore"``) labels that name no class."""
        bad = {lab: n for lab, n in labels.items() if self.resolve(lab) is None}
        if bad and self.unknown == "error":
            shown = ", ".join(f"{lab!r} ({n})" for lab, n in sorted(bad.items()))
            raise InputError(
                f"{source} has labels {shown} that are not in the class list "
                f"{list(self.class_map.names)}: add them to `classes`, rename them with "
                "label_map={'label': 'class'}, or set unknown_labels='ignore'"
            )


def check_bounds(store: Any, dimensions: tuple[int, int], source: str) -> None:
    """Raise when annotations lie outside the slide's level-0 extent (1% tolerance)."""
    from shapely.geometry import box

    w, h = dimensions
    everything = box(-1e15, -1e15, 1e15, 1e15)
    tol_x, tol_y = max(2.0, 0.01 * w), max(2.0, 0.01 * h)
    bad = [
        (key, b)
        for key, b in store.bquery(everything).items()
        if b[0] < -tol_x or b[1] < -tol_y or b[2] > w + tol_x or b[3] > h + tol_y
    ]
    if bad:
        key, b = bad[0]
        label = label_of(store[key].properties)
        raise InputError(
            f"{source}: {len(bad)} annotation(s) lie outside the slide's level-0 extent "
            f"{w} x {h}, e.g. {label!r} with bounds ({b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, "
            f"{b[3]:.0f}): is the file for another slide, or drawn on a downsampled image "
            "(then set annotation_scale)?"
        )


def paint_store(
    store: Any,
    cells: np.ndarray,
    cell_size: float,
    resolver: LabelResolver,
    tissue: np.ndarray,
    unannotated_value: int,
    precedence: str | Sequence[str] = "area",
) -> None:
    """Rasterise the store's polygons into ``cells`` (in place), tile by tile.

    Args:
        cells: uint8 class map whose cell (r, c) covers level-0 pixels
            ``[c * cell_size, (c + 1) * cell_size)`` horizontally and likewise vertically.
        tissue: boolean map of the same shape; class values are painted on tissue only.
        unannotated_value: what a hole restores on tissue.
        precedence: ``area`` or class names from bottom to top.
    """
    from shapely.geometry import box

    rank = _ranker(resolver, precedence)
    ignore = resolver.class_map.ignore_index
    rows, cols = cells.shape
    for r0 in range(0, rows, _TILE_CELLS):
        for c0 in range(0, cols, _TILE_CELLS):
            r1, c1 = min(r0 + _TILE_CELLS, rows), min(c0 + _TILE_CELLS, cols)
            query = box(c0 * cell_size, r0 * cell_size, c1 * cell_size, r1 * cell_size)
            found = store.query(query)
            drawn = [
                (ann, value)
                for ann in found.values()
                if not ann.properties.get("no_area")
                and (value := resolver.resolve(label_of(ann.properties))) is not None
            ]  # an unknown label (unknown_labels="ignore") drops its polygon
            if not drawn:
                continue
            tile, on_tissue = cells[r0:r1, c0:c1], tissue[r0:r1, c0:c1]
            shown_area = np.full(tile.shape, np.inf)  # area of the polygon shown per cell
            for ann, value in sorted(drawn, key=rank):
                inside = _fill(ann.geometry, (r0, c0), tile.shape, cell_size)
                area = ann.geometry.area
                if value in (HOLE, ignore):  # cuts only the larger region it lies in
                    inside &= shown_area > area
                if value != ignore:
                    inside &= on_tissue
                tile[inside] = unannotated_value if value == HOLE else value
                shown_area[inside] = area


def _ranker(resolver: LabelResolver, precedence: str | Sequence[str]) -> Callable[[Any], tuple]:
    """Sort key of ``(annotation, value)``: class polygons by precedence, then holes and
    ``@ignore`` polygons, larger first; ties by value and bounds (independent of file order)."""
    order: dict[str, int] = {}
    if not isinstance(precedence, str):
        order = {name: i for i, name in enumerate(precedence)}
    elif precedence != "area":
        raise InputError(
            f"precedence={precedence!r}: use 'area' or a list of class names (bottom first)"
        )
    ignore = resolver.class_map.ignore_index

    def rank(item: tuple[Any, int]) -> tuple:
        ann, value = item
        cut = value in (HOLE, ignore)
        name = "" if cut else resolver.class_map.names[value]
        geometry = ann.geometry
        return (cut, order.get(name, -1), -geometry.area, value, geometry.bounds, geometry.wkb)

    return rank


def _fill(
    geometry: Any, origin: tuple[int, int], shape: tuple[int, int], cell_size: float
) -> np.ndarray:
    """Boolean tile mask of the cells whose centre lies inside a (Multi)Polygon.

    OpenCV's scanline fill (fast, any polygon size) also takes cells its outline passes
    through; every cell within one cell of the outline is then decided exactly by its centre
    (shapely), so adjacent polygons sharing an edge never overlap.
    """
    import cv2
    import shapely

    fill = np.zeros(shape, np.uint8)
    outline = np.zeros(shape, np.uint8)
    factor = float(1 << _SHIFT)

    def ring(coords: Any) -> np.ndarray:
        xy = np.asarray(coords, np.float64)[:, :2] / cell_size - 0.5
        xy -= (origin[1], origin[0])
        return np.round(xy * factor).astype(np.int32)

    for poly in getattr(geometry, "geoms", [geometry]):
        if poly.is_empty or poly.geom_type != "Polygon":
            continue
        rings = [ring(poly.exterior.coords)] + [ring(r.coords) for r in poly.interiors]
        part = np.zeros(shape, np.uint8)  # each part alone: its holes never erase another part
        cv2.fillPoly(part, rings[:1], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        if len(rings) > 1:
            cv2.fillPoly(part, rings[1:], 0, lineType=cv2.LINE_8, shift=_SHIFT)
        fill |= part
        cv2.polylines(outline, rings, True, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    rows, cols = np.nonzero(cv2.dilate(outline, np.ones((3, 3), np.uint8)))  # cells near an edge
    if len(rows):
        xs = (origin[1] + cols + 0.5) * cell_size
        ys = (origin[0] + rows + 0.5) * cell_size
        fill[rows, cols] = shapely.contains_xy(geometry, xs, ys)
    return fill.astype(bool)
