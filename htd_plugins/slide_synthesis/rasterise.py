"""Annotations (QuPath GeoJSON, ASAP XML, tiatoolbox stores) rasterised into a layout, with
the slide layer's store and painter (cell centre inside a polygon; precedence by area)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap
from htd_plugins.slide_synthesis.layout import UNSET, check_mpp, unknown_class_error


def _resolver(names: Mapping[str, str], class_map: ClassMap) -> Any:
    """The slide layer's label resolver with the layout's renames (``@ignore``, ``@hole``, and
    CAMELYON16's ``_2`` exclusion group as a hole, as the slide samplers read them)."""
    from htd_plugins.slides import LabelResolver

    return LabelResolver(class_map, {k: v for k, v in names.items() if k != v}, "error")


def _labels(store: Any, path: Path, resolver: Any, class_map: ClassMap) -> None:
    from htd_plugins.slides import store_labels

    labels = store_labels(store)
    if not labels:
        raise InputError(f"layout {path} holds no polygon annotation")
    unknown = [lab for lab in labels if resolver.resolve(lab) is None]
    if unknown:
        raise unknown_class_error(path, unknown, class_map)


def _paint(store: Any, shape: tuple[int, int], cell: float, resolver: Any) -> np.ndarray:
    from htd_plugins.slides import paint_store

    cells = np.full(shape, UNSET, np.uint8)
    paint_store(store, cells, cell, resolver, np.ones(shape, bool), UNSET)
    return cells


def rasterise_canvas(
    path: Path,
    class_map: ClassMap,
    names: Mapping[str, str],
    mpp: float | None,
    size: Sequence[int] | None,
    crop: bool = False,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    from shapely.geometry import box

    from htd_plugins.slides import open_store

    if mpp is None:
        raise InputError(
            f"layout {path}: annotations need the resolution they are drawn at: pass mpp=<um/px> (--mpp)"
        )
    mpp = check_mpp(mpp, "mpp")
    resolver = _resolver(names, class_map)
    with open_store(path) as store:
        _labels(store, path, resolver, class_map)
        if size is None:
            bounds = np.array(list(store.bquery(box(-1e15, -1e15, 1e15, 1e15)).values()))
            size = (math.ceil(bounds[:, 2].max()), math.ceil(bounds[:, 3].max()))
        w, h = _size(size)
        cut = _beyond_canvas(store, path, w, h, crop)
        mask = _paint(store, (h, w), 1.0, resolver)
    info = {"kind": "annotations", "size": [w, h]}
    return mask, mpp, {**info, "cut": cut} if cut else info


def _beyond_canvas(store: Any, path: Path, w: int, h: int, crop: bool) -> str | None:
    """None when every annotation lies inside the W x H canvas; else an error (naming both
    sizes) or, with ``crop``, one line saying how much is cut."""
    from shapely.geometry import box

    shapes = [a.geometry for a in store.values()]
    canvas = box(0, 0, w, h)
    bounds = np.array([g.bounds for g in shapes]) if shapes else np.zeros((0, 4))
    if not len(bounds) or (bounds[:, :2].min() >= 0 and bounds[:, 2].max() <= w
                           and bounds[:, 3].max() <= h):  # fmt: skip
        return None
    ew, eh = math.ceil(bounds[:, 2].max()), math.ceil(bounds[:, 3].max())
    if not crop:
        raise InputError(
            f"layout {path}: its annotations extend to {ew} x {eh} px, beyond the canvas size "
            f"{w} x {h} px (size=, --size W H): give --size {max(ew, w)} {max(eh, h)} (or "
            "larger), or crop=True (--crop-layout) to cut them"
        )
    area = sum(g.area for g in shapes)
    kept = sum(g.intersection(canvas).area for g in shapes)
    whole = sum(canvas.contains(g) for g in shapes)
    outside = sum(not canvas.intersects(g) for g in shapes)
    return (
        f"{len(shapes) - whole} of {len(shapes)} annotations extend beyond the {w} x {h} px "
        f"canvas (they reach {ew} x {eh} px): {outside} dropped wholly, "
        f"{len(shapes) - whole - outside} cut; {whole} kept whole, "
        f"{100 * (1 - kept / area) if area else 0:.1f} % of the annotated area cut"
    )


def rasterise_slide(
    path: Path, class_map: ClassMap, names: Mapping[str, str], mpp: float | None,
    slide: str | Path, slide_mpp: float | None, region: Sequence[int] | None,
) -> tuple[np.ndarray, float, dict[str, Any]]:  # fmt: skip
    from shapely.geometry import box

    from htd_plugins.slides import Slide, check_bounds, open_store

    real = Slide(slide, slide_mpp)
    if mpp is None:
        raise InputError(f"layout {path}: pass mpp=<um/px>, the resolution to synthesise at")
    mpp = check_mpp(mpp, "mpp")
    cell = mpp / real.base_mpp  # level-0 px per layout px
    resolver = _resolver(names, class_map)
    with open_store(path) as store:
        _labels(store, path, resolver, class_map)
        check_bounds(store, real.dimensions, str(path))
        if region is None:
            b = np.array(list(store.bquery(box(-1e15, -1e15, 1e15, 1e15)).values()))
            x0, y0 = max(0, math.floor(b[:, 0].min())), max(0, math.floor(b[:, 1].min()))
            region = (x0, y0, math.ceil(b[:, 2].max()) - x0, math.ceil(b[:, 3].max()) - y0)
        x0, y0, rw, rh = (int(v) for v in region)
        w, h = _size((max(1, round(rw / cell)), max(1, round(rh / cell))))
        mask = _paint(_Shifted(store, x0, y0), (h, w), cell, resolver)
    info = {
        "kind": "slide annotations",
        "slide_id": real.slide_id,
        "region_level0": [x0, y0, rw, rh],
    }
    return mask, mpp, info


def _size(size: Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size={size!r}: give (width, height) in pixels") from None
    if w < 1 or h < 1:
        raise InputError(f"size={size!r}: width and height must be positive")
    return w, h


class _Shifted:
    """An annotation store seen from level-0 pixel (x0, y0): what ``paint_store`` queries."""

    def __init__(self, store: Any, x0: int, y0: int) -> None:
        self.store, self.x0, self.y0 = store, x0, y0

    def query(self, geometry: Any) -> dict[Any, Any]:
        from shapely.affinity import translate
        from tiatoolbox.annotation.storage import Annotation

        found = self.store.query(translate(geometry, self.x0, self.y0))
        return {
            k: Annotation(translate(a.geometry, -self.x0, -self.y0), a.properties)
            for k, a in found.items()
        }
