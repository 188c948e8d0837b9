"""Pictures of a slide's pseudo maps that a pathologist can read, written beside the maps::

    maps/k005/<slide_id>.overlay.png   the slide thumbnail | the same with the map's class
                                       colours blended in; legend of the phenotypes
    maps/k005/<slide_id>.gallery.png   per phenotype present in the slide: its colour, name,
                                       cell count and share, and example patches

Drawn when a stage has the slide files (``maps SLIDES`` on the teacher path, ``maps
--classifier``, :func:`~htd_plugins.discovery.pseudo_maps_for_image`): the stores keep no
slide path. The example patches are the very patches the encoder saw (``patch_size`` px at
``read_mpp``, centred on their cell): up to :data:`EXAMPLES` cells of the phenotype drawn at
random, seeded by the slide id, k and the class, from its interior cells (all four neighbours
of the same phenotype) first, so borders between tissues are not mistaken for a phenotype.
Each patch is read once however many levels show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from htd_core.images import read_index_mask
from htd_core.io import atomic_save_image
from htd_core.types import IGNORE_INDEX, ClassMap
from htd_plugins.discovery.grid import PatchGrid, open_for_grid, read_patch
from htd_plugins.pictures import class_gallery, overlay_preview

#: Suffixes of the two pictures beside each map.
OVERLAY, GALLERY = ".overlay.png", ".gallery.png"
#: Longest side of the thumbnail under the overlay, in pixels.
THUMBNAIL_SIDE = 1024
#: Example patches per phenotype in a gallery.
EXAMPLES = 6


def thumbnail_mpp(grid: PatchGrid, side: int = THUMBNAIL_SIDE) -> float:
    """The resolution (um/px) at which the slide's longest side is about ``side`` px (never
    finer than its base)."""
    return max(grid.slide_mpp, max(grid.slide_dims) * grid.slide_mpp / side)


def labels_on(labels: np.ndarray, grid: PatchGrid, shape: tuple[int, int]) -> np.ndarray:
    """The map (rows x cols, one pixel per grid cell) on an image of ``shape`` (H, W) that
    spans the whole slide: each pixel takes the cell its centre falls in."""
    height, width = shape
    w0, h0 = grid.slide_dims
    d = grid.cell_size_base
    cols = np.minimum(
        ((np.arange(width) + 0.5) * (w0 / width) / d).astype(int), labels.shape[1] - 1
    )
    rows = np.minimum(((np.arange(height) + 0.5) * (h0 / height) / d).astype(int), labels.shape[0] - 1)  # fmt: skip
    return labels[rows[:, None], cols[None, :]]


def example_cells(labels: np.ndarray, cls: int, n: int, seed: list[int]) -> np.ndarray:
    """Up to ``n`` (row, col) cells of class ``cls``, drawn with ``seed``: interior cells
    (all four neighbours of the same class) first, then border cells."""
    padded = np.pad(labels, 1, constant_values=IGNORE_INDEX)
    mine = labels == cls
    interior = mine.copy()
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        interior &= padded[dr : dr + labels.shape[0], dc : dc + labels.shape[1]] == cls
    rng = np.random.default_rng(seed)
    picks = []
    for pool in (np.argwhere(interior), np.argwhere(mine & ~interior)):
        take = min(n - len(picks), len(pool))
        picks += [tuple(p) for p in pool[rng.choice(len(pool), take, replace=False)]]
    return np.array(picks, np.int64).reshape(-1, 2)


def draw_slide_pictures(
    path: str | Path, grid: PatchGrid, maps: Mapping[int, tuple[Path, ClassMap]], slide_id: str
) -> dict[int, tuple[Path, Path]]:
    """Write the overlay and the gallery of every level's map of one slide.

    Args:
        path: the slide file (opened at the grid's base resolution; it must be the file the
            grid was laid on).
        grid: the slide's patch grid.
        maps: k -> (the map PNG, uint8 one pixel per cell; the level's class map).
        slide_id: the slide's opaque id (the only name the pictures show).

    Returns:
        k -> (overlay png, gallery png), written atomically beside each map.

    Raises:
        InputError: the slide cannot be opened or is not the file the grid was laid on.
    """
    slide = open_for_grid(path, grid)
    mpp = thumbnail_mpp(grid)
    thumb = slide.thumbnail(mpp)
    patches: dict[tuple[int, int], np.ndarray] = {}
    cell_um = grid.stride * grid.read_mpp
    written = {}
    for k, (png, class_map) in sorted(maps.items()):
        labels = read_index_mask(png)
        title = (f"slide {slide_id}: pseudo map at k = {k} over the slide ({mpp:.3g} um/px; "
                 f"one map cell = {cell_um:.3g} um)")  # fmt: skip
        overlay = overlay_preview(thumb, labels_on(labels, grid, thumb.shape[:2]), class_map,
                                  title=title)  # fmt: skip
        counts = np.bincount(labels[labels != IGNORE_INDEX].ravel(), minlength=k)[:k]
        rows = []
        for cls in np.flatnonzero(counts):
            cells = example_cells(labels, int(cls), EXAMPLES, [int(slide_id[:8], 16), k, int(cls)])
            for r, c in map(tuple, cells):
                if (r, c) not in patches:
                    patches[(r, c)] = read_patch(slide, grid, int(r), int(c))
            share = counts[cls] / counts.sum()
            rows.append((class_map.names[cls], class_map.colors[cls],
                         f"{counts[cls]} cells, {share:.0%}", [patches[tuple(p)] for p in cells]))  # fmt: skip
        field_um = grid.patch_size * grid.read_mpp
        gallery = class_gallery(
            rows, side=int(np.clip(grid.patch_size, 64, 128)), per_row=EXAMPLES,
            title=f"slide {slide_id}: example patches per phenotype at k = {k} "
            f"({grid.patch_size} px at {grid.read_mpp:g} um/px = {field_um:.3g} um fields)",
        )  # fmt: skip
        base = png.with_suffix("")
        paths = (base.with_name(base.name + OVERLAY), base.with_name(base.name + GALLERY))
        atomic_save_image(paths[0], overlay)
        atomic_save_image(paths[1], gallery)
        written[k] = paths
    return written
