"""Samples for tests: synthetic ones for shapes, real tiles from ``../shared/data``.

Synthetic samples only exercise shapes and bookkeeping; evidence that the method works must
come from the real tiles.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from htd_core.errors import InputError
from htd_core.registry import Registry
from htd_core.types import ClassMap, TissueSample


def synthetic_sample(
    size: int = 64,
    classes: tuple[str, ...] = ("tumor", "stroma", "normal"),
    seed: int = 0,
    with_image: bool = True,
) -> TissueSample:
    """A random blocky layout with a noise image (shape tests only)."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    cells = rng.integers(0, k, size=(4, 4))
    mask = np.kron(cells, np.ones((size // 4 + 1, size // 4 + 1), np.int64))[:size, :size]
    mask[0, 0] = 255  # one ignored pixel
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) if with_image else None
    return TissueSample(
        image, mask.astype(np.uint8), ClassMap(classes), {"slide_id": f"synthetic-{seed}"}
    )


def real_tiles(
    root: str | Path, dataset: str = "glas", n: int = 4, size: int | None = None
) -> list[TissueSample]:
    """The first ``n`` real image+mask pairs of a shared tile set (sorted by name).

    Read by the built-in ``tiles`` sampler (created by name from the installed plugins, not
    the current plugin manager, so a test's isolated manager does not hide it); its presets
    name the classes of each set.

    Args:
        root: the shared data folder (``shared_data`` fixture).
        dataset: a tile set of that folder with a ``tiles`` preset (``glas``,
            ``wsss4luad_val``, ``camelyon_mini``).
        n: how many pairs to read.
        size: centre-crop to ``size`` x ``size``; smaller tiles of the ``n`` are left out.

    Returns:
        Samples (uint8 H x W x 3 image, uint8 H x W class-index mask) whose ``meta`` holds
        opaque ids (:func:`htd_core.images.opaque_id`): ``slide_id`` of the tile file, unique
        per tile, and ``source_id`` of its source image (tiles of one GlaS image share it), so
        splits by source keep the tiles of one image together.

    Raises:
        InputError: the tile set is absent or has no images.
    """
    folder = Path(root) / dataset
    if not (folder / "images").is_dir():
        raise InputError(f"no tile set {dataset!r} in {root}: expected {folder / 'images'}")
    sampler = _builtin_patch_samplers().create("tiles", root=folder, preset=dataset, limit=n)
    out = []
    for sample in sampler:
        image, mask = sample.image, sample.mask
        if size is not None:
            h, w = mask.shape
            if h < size or w < size:
                continue
            y, x = (h - size) // 2, (w - size) // 2
            image, mask = image[y : y + size, x : x + size], mask[y : y + size, x : x + size]
        meta = {"slide_id": sample.meta["tile_id"], "source_id": sample.meta["slide_id"]}
        out.append(
            TissueSample(
                np.ascontiguousarray(image), np.ascontiguousarray(mask), sample.class_map, meta
            )
        )
    return out


@functools.cache
def _builtin_patch_samplers() -> Registry:
    """The patch-sampler registry of the installed plugins (a private manager, built once)."""
    from htd_core.plugins import PluginManager

    return PluginManager(autoload=True).patch_samplers
