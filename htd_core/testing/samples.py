"""Samples for tests: synthetic ones for shapes, real tiles from ``../shared/data``.

Synthetic samples only exercise shapes and bookkeeping; evidence that the method works must
come from the real tiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from htd_core.data import TILE_SETS
from htd_core.errors import InputError
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

    Args:
        root: the shared data folder (``shared_data`` fixture).
        dataset: a key of :data:`TILE_SETS`.
        size: centre-crop to ``size`` x ``size`` when the tile is larger.
    """
    from PIL import Image

    spec = TILE_SETS[dataset]
    folder = Path(root) / dataset
    images = sorted((folder / "images").iterdir())[:n]
    if not images:
        raise InputError(f"no images in {folder / 'images'}")
    cm = ClassMap(spec["classes"])
    out = []
    for img_path in images:
        mask_path = next((folder / "masks").glob(img_path.stem + ".*"))
        image = np.asarray(Image.open(img_path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path))
        if mask.ndim == 3:
            mask = mask[..., 0]
        if spec["threshold"] is not None:
            mask = (mask > spec["threshold"]).astype(np.uint8)
        if size is not None:
            h, w = mask.shape
            if h < size or w < size:
                continue
            y, x = (h - size) // 2, (w - size) // 2
            image, mask = image[y : y + size, x : x + size], mask[y : y + size, x : x + size]
        out.append(
            TissueSample(
                np.ascontiguousarray(image),
                np.ascontiguousarray(mask),
                cm,
                {"slide_id": img_path.stem},
            )
        )
    return out
