"""The tissue patches of a slide: how slides are cut (:class:`GridOptions`), the grid and its
tissue cells (:func:`plan_slide`), and the patches read in DataLoader worker processes
(:class:`PatchDataset`, :func:`patch_batches`). ``embed`` and ``distill`` read patches so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_plugins.discovery.grid import (
    PatchGrid,
    make_grid,
    open_for_grid,
    read_patch,
    tissue_cells,
    tissue_fraction,
)
from htd_plugins.slides import Slide


@dataclass(frozen=True)
class GridOptions:
    """How slides are cut: read resolution, patch and cell size, tissue threshold."""

    read_mpp: float = 0.5
    patch_size: int = 224
    stride: int | None = None  # default: patch_size (no overlap)
    min_tissue: float = 0.25
    slide_mpp: float | None = None  # for slides whose metadata has no mpp

    def __post_init__(self) -> None:
        if self.read_mpp <= 0:
            raise InputError(f"read mpp={self.read_mpp} must be positive (um/px)")
        if self.slide_mpp is not None and self.slide_mpp <= 0:
            raise InputError(f"slide mpp={self.slide_mpp} must be positive (um/px)")
        if self.stride is None:
            object.__setattr__(self, "stride", self.patch_size)


class PatchDataset:
    """uint8 patches (patch_size x patch_size x 3) of one slide's tissue cells.

    Args:
        path: the slide file the grid was laid on.
        grid: its grid (geometry and the base mpp it was made with).
        coords: K x 2 (row, col) of the cells to read, in order.
        slide: the slide already open (used in this process; each DataLoader worker process
            opens the file itself, as open slides do not pickle).
        normalize: applied to every patch (a picklable
            :class:`~htd_plugins.discovery.stain.PatchNormalizer`), or None.
    """

    def __init__(
        self,
        path: str | Path,
        grid: PatchGrid,
        coords: np.ndarray,
        slide: Slide | None = None,
        normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.path, self.grid, self.coords = Path(path), grid, coords
        self._slide, self.normalize = slide, normalize

    def __len__(self) -> int:
        return len(self.coords)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_slide": None}

    def release(self) -> None:
        """Forget the open slide (before forking readers: a handle must not be shared)."""
        self._slide = None

    def __getitem__(self, i: int) -> np.ndarray:
        if self._slide is None:
            self._slide = open_for_grid(self.path, self.grid)
        row, col = self.coords[i]
        patch = read_patch(self._slide, self.grid, int(row), int(col))
        return patch if self.normalize is None else self.normalize(patch)


def patch_batches(dataset: PatchDataset, batch_size: int, workers: int):
    """Batches of uint8 patches (torch N x H x W x 3) in order, read by ``workers`` processes
    (each opens the slide itself)."""
    import torch
    from torch.utils.data import DataLoader

    if workers > 0:
        dataset.release()

    def collate(items: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(items))

    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate, persistent_workers=False,
    )  # fmt: skip


def plan_slide(path: str | Path, options: GridOptions) -> tuple[Slide, PatchGrid, np.ndarray]:
    """Open the slide, lay the grid and find its tissue cells: (slide, grid, coords), coords
    K x 2 int32 (row, col)."""
    slide = Slide(path, default_mpp=options.slide_mpp)
    grid = make_grid(slide, options.read_mpp, options.patch_size, int(options.stride))
    coords = tissue_cells(tissue_fraction(slide, grid), options.min_tissue)
    return slide, grid, coords
