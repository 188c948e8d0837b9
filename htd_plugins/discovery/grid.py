"""Patch grids over slides: lay a grid over a :class:`~htd_plugins.slides.Slide`, find tissue.

A grid cell is ``stride`` x ``stride`` pixels at the read resolution; the patch embedded for a
cell is ``patch_size`` pixels centred on the cell, so overlapping context (stride < patch)
gives finer maps. The grid covers the whole slide (ceil), so a pseudo map with one pixel per
cell spans the full slide extent. Slides are opened only through the slide layer
(:class:`htd_plugins.slides.Slide`); a grid records geometry, never the slide's path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_plugins.slides import Slide, tissue_mask

#: Slides read at a resolution finer than their base by more than this factor are refused.
UPSAMPLE_TOLERANCE = 0.95
#: Longest side of the thumbnail the tissue mask is computed on.
MAX_MASK_SIDE = 4096


@dataclass(frozen=True)
class PatchGrid:
    """Geometry of one slide's patch grid and its tissue cells.

    Attributes:
        slide_mpp: base resolution (um/px) used for the slide.
        slide_dims: level-0 (width, height) in pixels.
        read_mpp: resolution patches are read at.
        patch_size: patch side in read pixels.
        stride: grid cell side in read pixels.
        rows, cols: grid shape (covers the whole slide).
    """

    slide_mpp: float
    slide_dims: tuple[int, int]
    read_mpp: float
    patch_size: int
    stride: int
    rows: int
    cols: int

    @property
    def scale(self) -> float:
        """Level-0 pixels per read pixel."""
        return self.read_mpp / self.slide_mpp

    @property
    def cell_size_base(self) -> float:
        """Grid cell side in level-0 pixels."""
        return self.stride * self.scale

    def patch_location(self, row: int, col: int) -> tuple[int, int]:
        """Level-0 (x, y) of the top-left corner of the patch centred on cell (row, col)."""
        offset = self.stride / 2 - self.patch_size / 2
        return (
            int(round((col * self.stride + offset) * self.scale)),
            int(round((row * self.stride + offset) * self.scale)),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["slide_dims"] = list(self.slide_dims)
        data["cell_size_base"] = self.cell_size_base
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchGrid:
        """The grid of a ``to_dict`` mapping (other keys, such as an old ``slide_path``, are
        ignored)."""
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in data.items() if k in fields}
        values["slide_dims"] = tuple(int(v) for v in values["slide_dims"])
        return cls(**values)


def make_grid(slide: Slide, read_mpp: float, patch_size: int, stride: int) -> PatchGrid:
    """The grid of ``slide`` at ``read_mpp`` um/px with cells of ``stride`` px and patches of
    ``patch_size`` px (both at ``read_mpp``).

    Raises:
        InputError: a patch under 8 px, a stride outside [1, patch_size], a read resolution
            finer than the slide's base, or a patch larger than the slide.
    """
    if patch_size < 8:
        raise InputError(f"patch_size={patch_size} is too small: use at least 8 pixels")
    if not 1 <= stride <= patch_size:
        raise InputError(f"stride={stride} must be between 1 and patch_size={patch_size}")
    mpp = slide.base_mpp
    if read_mpp < mpp * UPSAMPLE_TOLERANCE:
        raise InputError(
            f"read resolution {read_mpp} um/px is finer than slide {slide.path}'s base "
            f"{mpp:.3g} um/px: use --mpp {mpp:.3g} or coarser"
        )
    width, height = slide.dimensions
    scale = read_mpp / mpp
    read_w, read_h = width / scale, height / scale
    if patch_size > max(read_w, read_h):
        raise InputError(
            f"patch_size={patch_size} px at {read_mpp} um/px is larger than slide {slide.path} "
            f"({read_w:.0f} x {read_h:.0f} px at that resolution): use a smaller patch or --mpp"
        )
    return PatchGrid(
        slide_mpp=mpp,
        slide_dims=(width, height),
        read_mpp=float(read_mpp),
        patch_size=int(patch_size),
        stride=int(stride),
        rows=max(1, math.ceil(read_h / stride)),
        cols=max(1, math.ceil(read_w / stride)),
    )


def open_for_grid(path: str | Path, grid: PatchGrid) -> Slide:
    """Open a slide to read the patches of a recorded grid (the base mpp it was made with).

    Raises:
        InputError: the file is not the one the grid was laid on (other level-0 size).
    """
    slide = Slide(path, grid.slide_mpp)
    if slide.dimensions != grid.slide_dims:
        w, h = grid.slide_dims
        raise InputError(
            f"slide {path} (id {slide.slide_id}) is {slide.dimensions[0]} x "
            f"{slide.dimensions[1]} px but its grid was laid on a {w} x {h} px slide: it is "
            "another file under the same name; pass the slide that was embedded"
        )
    return slide


def tissue_fraction(
    slide: Slide, grid: PatchGrid, method: str = "otsu", min_saturation: float = 0.07
) -> np.ndarray:
    """Fraction of tissue per grid cell (rows x cols float32).

    Tissue = tiatoolbox's tissue masker on a thumbnail (through the slide helpers'
    :func:`htd_plugins.slides.tissue_mask`, which also returns no tissue for a blank
    slide), AND a saturation floor: glass, dust and grey pen are unsaturated, H&E is not.
    """
    width, height = grid.slide_dims
    cell_um = grid.stride * grid.read_mpp
    mask_mpp = max(cell_um / 4, grid.slide_mpp, max(width, height) * grid.slide_mpp / MAX_MASK_SIDE)
    thumb = slide.thumbnail(mask_mpp)
    if thumb.size == 0:
        return np.zeros((grid.rows, grid.cols), np.float32)
    tissue = tissue_mask(thumb, mask_mpp, method)
    rgb = thumb.astype(np.float32)
    hi, lo = rgb.max(axis=2), rgb.min(axis=2)
    tissue &= (hi - lo) / np.maximum(hi, 1) >= min_saturation
    mh, mw = tissue.shape
    # Each thumbnail pixel centre -> grid cell, using the actual thumbnail/slide ratio.
    cols = ((np.arange(mw) + 0.5) * (width / mw) / grid.cell_size_base).astype(int)
    rows = ((np.arange(mh) + 0.5) * (height / mh) / grid.cell_size_base).astype(int)
    cell = (
        np.minimum(rows, grid.rows - 1)[:, None] * grid.cols + np.minimum(cols, grid.cols - 1)[None]
    ).ravel()
    n_cells = grid.rows * grid.cols
    total = np.bincount(cell, minlength=n_cells)
    hits = np.bincount(cell, weights=tissue.ravel().astype(np.float64), minlength=n_cells)
    frac = np.where(total > 0, hits / np.maximum(total, 1), 0.0)
    return frac.reshape(grid.rows, grid.cols).astype(np.float32)


def tissue_cells(fraction: np.ndarray, min_tissue: float) -> np.ndarray:
    """(row, col) int32 pairs of the cells whose tissue fraction is at least ``min_tissue``."""
    if not 0 < min_tissue <= 1:
        raise InputError(f"min_tissue={min_tissue} must be in (0, 1]")
    rows, cols = np.nonzero(fraction >= min_tissue)
    return np.stack([rows, cols], axis=1).astype(np.int32)


def read_patch(slide: Slide, grid: PatchGrid, row: int, col: int) -> np.ndarray:
    """uint8 patch_size x patch_size x 3 centred on cell (row, col); outside is white."""
    return slide.read_level0(*grid.patch_location(row, col), grid.patch_size, grid.read_mpp)
