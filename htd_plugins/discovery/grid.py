"""Slides and their patch grids: open a slide (tiatoolbox), find tissue, lay a grid over it.

A grid cell is ``stride`` x ``stride`` pixels at the read resolution; the patch embedded for a
cell is ``patch_size`` pixels centred on the cell, so overlapping context (stride < patch)
gives finer maps. The grid covers the whole slide (ceil), so a pseudo map with one pixel per
cell spans the full slide extent.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError

#: Slides read at a resolution finer than their base by more than this factor are refused.
UPSAMPLE_TOLERANCE = 0.95
#: Longest side of the thumbnail the tissue mask is computed on.
MAX_MASK_SIDE = 4096


def slide_id_of(path: str | Path) -> str:
    """Opaque slide identifier: the file name without extension."""
    return Path(path).stem


def open_slide(path: str | Path, slide_mpp: float | None = None) -> Any:
    """Open a slide or plain image with tiatoolbox, with a known base resolution.

    Args:
        path: any file tiatoolbox reads (svs, ndpi, tiff, png...).
        slide_mpp: microns per pixel used when the file's metadata has none.

    Raises:
        InputError: missing or unreadable file, or no mpp in the metadata nor given.
    """
    from tiatoolbox.wsicore.wsireader import WSIReader

    path = Path(path)
    if not path.is_file():
        raise InputError(f"slide {path} does not exist: check the path or the slide list")
    with _quiet_logging():  # tiatoolbox logs "unknown mpp" on the root logger at every open
        try:
            reader = WSIReader.open(path)
        except Exception as exc:
            raise InputError(f"cannot read slide {path}: {type(exc).__name__}: {exc}") from exc
        mpp = reader.info.mpp
        if mpp is None or mpp[0] is None:
            if slide_mpp is None:
                raise InputError(
                    f"slide {path} has no microns-per-pixel metadata: pass its resolution "
                    "(--slide-mpp, e.g. 0.25 for 40x or 0.5 for 20x scans)"
                )
            reader = WSIReader.open(path, mpp=(float(slide_mpp), float(slide_mpp)))
    return reader


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def base_mpp(reader: Any) -> float:
    """Microns per pixel of the slide's level 0."""
    return float(reader.info.mpp[0])


@dataclass(frozen=True)
class PatchGrid:
    """Geometry of one slide's patch grid and its tissue cells.

    Attributes:
        slide_path: the slide file (as given).
        slide_mpp: base resolution (um/px) used for the slide.
        slide_dims: level-0 (width, height) in pixels.
        read_mpp: resolution patches are read at.
        patch_size: patch side in read pixels.
        stride: grid cell side in read pixels.
        rows, cols: grid shape (covers the whole slide).
    """

    slide_path: str
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
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in data.items() if k in fields}
        values["slide_dims"] = tuple(int(v) for v in values["slide_dims"])
        return cls(**values)


def make_grid(
    reader: Any, slide_path: str | Path, read_mpp: float, patch_size: int, stride: int
) -> PatchGrid:
    """The grid of ``reader`` at ``read_mpp``; refuses upsampling and oversized patches."""
    if patch_size < 8:
        raise InputError(f"patch_size={patch_size} is too small: use at least 8 pixels")
    if not 1 <= stride <= patch_size:
        raise InputError(f"stride={stride} must be between 1 and patch_size={patch_size}")
    mpp = base_mpp(reader)
    if read_mpp < mpp * UPSAMPLE_TOLERANCE:
        raise InputError(
            f"read resolution {read_mpp} um/px is finer than slide {slide_path}'s base "
            f"{mpp:.3g} um/px: use --mpp {mpp:.3g} or coarser"
        )
    width, height = (int(v) for v in reader.info.slide_dimensions)
    scale = read_mpp / mpp
    read_w, read_h = width / scale, height / scale
    if patch_size > max(read_w, read_h):
        raise InputError(
            f"patch_size={patch_size} px at {read_mpp} um/px is larger than slide {slide_path} "
            f"({read_w:.0f} x {read_h:.0f} px at that resolution): use a smaller patch or --mpp"
        )
    return PatchGrid(
        slide_path=str(slide_path),
        slide_mpp=mpp,
        slide_dims=(width, height),
        read_mpp=float(read_mpp),
        patch_size=int(patch_size),
        stride=int(stride),
        rows=max(1, math.ceil(read_h / stride)),
        cols=max(1, math.ceil(read_w / stride)),
    )


def tissue_fraction(
    reader: Any, grid: PatchGrid, method: str = "otsu", min_saturation: float = 0.07
) -> np.ndarray:
    """Fraction of tissue per grid cell (rows x cols float32).

    Tissue = tiatoolbox's tissue masker on a thumbnail (through the slide helpers'
    :func:`htd_plugins.slides.tissue.tissue_mask`, which also returns no tissue for a blank
    slide), AND a saturation floor: glass, dust and grey pen are unsaturated, H&E is not.
    """
    from htd_plugins.slides.tissue import tissue_mask

    width, height = grid.slide_dims
    cell_um = grid.stride * grid.read_mpp
    mask_mpp = max(cell_um / 4, grid.slide_mpp, max(width, height) * grid.slide_mpp / MAX_MASK_SIDE)
    thumb = np.asarray(reader.slide_thumbnail(resolution=mask_mpp, units="mpp"))[..., :3]
    if thumb.size == 0:
        return np.zeros((grid.rows, grid.cols), np.float32)
    tissue = tissue_mask(np.ascontiguousarray(thumb, np.uint8), mask_mpp, method)
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


def read_patch(reader: Any, grid: PatchGrid, row: int, col: int) -> np.ndarray:
    """uint8 patch_size x patch_size x 3 centred on cell (row, col); outside is white."""
    patch = reader.read_rect(
        grid.patch_location(row, col),
        (grid.patch_size, grid.patch_size),
        resolution=grid.read_mpp,
        units="mpp",
        pad_constant_values=255,
    )
    patch = np.asarray(patch)[..., :3]
    if patch.shape[:2] != (grid.patch_size, grid.patch_size):  # tiatoolbox rounding
        from PIL import Image

        patch = np.asarray(
            Image.fromarray(patch).resize((grid.patch_size, grid.patch_size), Image.BILINEAR)
        )
    return np.ascontiguousarray(patch, dtype=np.uint8)
