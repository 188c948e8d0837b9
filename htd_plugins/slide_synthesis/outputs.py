"""What a synthetic slide is written as: a pyramidal TIFF, its label mask, its layout as GeoJSON.

The slide is a BigTIFF with one tiled, JPEG-compressed RGB page per pyramid level, the levels
chained as successive pages (reduced ones flagged ``NewSubfileType = 1``) and each page's mpp
in its resolution tags (pixels per centimetre): the generic pyramidal TIFF that OpenSlide
(``generic-tiff``), tiatoolbox (``TIFFWSIReader``) and QuPath open at every level. It holds
no label or macro image and no description. Level 0 is written tile row by tile row as the
decoder yields bands; the reduced levels (a third of level 0's bytes) are built on the way.

The label mask is a tiled, deflate-compressed single-page TIFF of class indices at the same
geometry and mpp, with a ``<name>.json`` sidecar naming the codes (what ``htd sample`` reads
as ``label_mask``). The layout as GeoJSON: one QuPath annotation (``classification.name``,
``color``) per connected region of each class, in level-0 pixels, its outline on pixel edges.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.types import ClassMap


@contextlib.contextmanager
def _atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (created by the writer, so it follows the umask),
    renamed over ``path`` when the block ends without error; removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resolution(mpp: float, downsample: float = 1.0) -> dict[str, Any]:
    per_cm = 1e4 / (mpp * downsample)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def _halve(image: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(
        image, (max(1, math.ceil(w / 2)), max(1, math.ceil(h / 2))), interpolation=cv2.INTER_AREA
    )


def write_pyramid(
    path: str | Path,
    bands: Iterable[np.ndarray],
    *,
    height: int,
    width: int,
    mpp: float,
    tile: int = 256,
    quality: int = 90,
) -> list[tuple[int, int]]:
    """Write the slide from uint8 bands (rows x >= width x 3, top to bottom) atomically.

    Bands wider than ``width`` are cut; rows past ``height`` are dropped. Levels halve until
    the whole image fits one tile.

    Returns:
        (width, height) of every level.
    """
    import tifffile

    common = {
        "tile": (tile, tile), "photometric": "rgb", "compression": "jpeg",
        "compressionargs": {"level": int(quality)}, "metadata": None,
    }  # fmt: skip
    half = np.zeros((math.ceil(height / 2), math.ceil(width / 2), 3), np.uint8)

    def level0() -> Iterator[np.ndarray]:
        pending = np.zeros((0, width, 3), np.uint8)
        done = 0
        source = iter(bands)
        while done < height:
            while pending.shape[0] < min(tile, height - done):
                band = next(source)[:, :width]
                pending = np.concatenate([pending, band])
            rows, pending = pending[:tile][: height - done], pending[tile:]
            reduced = _halve(rows)
            half[done // 2 : done // 2 + reduced.shape[0]] = reduced[: half.shape[0] - done // 2]
            for x in range(0, width, tile):
                yield rows[:, x : x + tile]
            done += rows.shape[0]

    dims = [(width, height)]
    with _atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        tif.write(level0(), shape=(height, width, 3), dtype=np.uint8, subfiletype=0,
                  **_resolution(mpp), **common)  # fmt: skip
        level, downsample = half, 2.0
        while max(dims[-1]) > tile:
            tif.write(level, subfiletype=1, **_resolution(mpp, downsample), **common)
            dims.append((level.shape[1], level.shape[0]))
            level, downsample = _halve(level), downsample * 2
    return dims


def write_label_mask(
    path: str | Path, mask: np.ndarray, class_map: ClassMap, mpp: float, tile: int = 256
) -> None:
    """The label mask TIFF (uint8 class indices, ignore index kept) and its JSON sidecar."""
    import tifffile

    from htd_core.io import atomic_write_json

    path = Path(path)
    with _atomic_path(path) as tmp, tifffile.TiffWriter(tmp) as tif:
        tif.write(np.ascontiguousarray(mask, np.uint8), tile=(tile, tile), photometric="minisblack",
                  compression="zlib", metadata=None, **_resolution(mpp))  # fmt: skip
    atomic_write_json(
        path.with_suffix(".json"),
        {"names": list(class_map.names), "ignore_index": class_map.ignore_index, "mpp": mpp},
    )


def layout_geojson(mask: np.ndarray, class_map: ClassMap) -> dict[str, Any]:
    """QuPath-compatible FeatureCollection of the layout (module doc); ignored pixels have no
    feature. Coordinates are level-0 pixel coordinates (pixel (r, c) spans [c, c+1) x [r, r+1))."""
    import cv2
    import shapely
    from shapely.geometry import Polygon, mapping

    features = []
    for k, name in enumerate(class_map.names):
        binary = cv2.compare(mask, k, cv2.CMP_EQ)  # uint8 0 / 255, one buffer
        if not cv2.countNonZero(binary):
            continue
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None:
            continue
        links = hierarchy[0]
        for i, contour in enumerate(contours):
            if links[i][3] != -1:  # a hole: added to its outer ring below
                continue
            holes, child = [], links[i][2]
            while child != -1:
                if len(contours[child]) >= 3:
                    holes.append(Polygon(_ring(contours[child])))
                child = links[child][0]
            poly = _pixel_region(contour, holes)
            if poly.is_empty:
                continue
            color = [int(c) for c in class_map.colors[k]] if class_map.colors else None
            features.append({
                "type": "Feature",
                "geometry": mapping(shapely.normalize(poly)),
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name, **({"color": color} if color else {})},
                },
            })  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def _ring(contour: np.ndarray) -> np.ndarray:
    """Contour points (pixel indices) as pixel-centre coordinates."""
    return contour.reshape(-1, 2).astype(np.float64) + 0.5


def _pixel_region(contour: np.ndarray, holes: list[Any]) -> Any:
    """From rings through boundary pixel centres to the union of those pixels' squares: grow
    the outer ring and shrink the holes by half a pixel (mitred corners). A region of one or
    two pixels (no ring) is the union of their squares."""
    import shapely
    from shapely.geometry import Polygon, box

    points = contour.reshape(-1, 2)
    if len(points) < 3:
        return shapely.unary_union([box(x, y, x + 1, y + 1) for x, y in points.tolist()])
    region = Polygon(_ring(contour)).buffer(0.5, join_style="mitre", mitre_limit=2.0)
    for hole in holes:
        region = region.difference(hole.buffer(-0.5, join_style="mitre", mitre_limit=2.0))
    return region
