"""The embed stage as a pure function: a shard of tile coordinates (slide, level, locations) ->
float16 features. The one-process path (:func:`htd_plugins.discovery.embed.embed_slide`) and the
cluster engine (:mod:`htd_plugins.discovery.engine`) both embed through :func:`tile_features`,
so their rows are the same batches through the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_plugins.discovery.grid import PatchGrid
from htd_plugins.discovery.patches import GridOptions, PatchDataset, patch_batches, plan_slide


@dataclass(frozen=True)
class TileShard:
    """Tiles of one slide to embed: everything a worker needs to read them itself.

    Attributes:
        path: the slide file (read by the worker; never written to any output).
        slide_id: its opaque id (:func:`htd_core.images.opaque_id`), for messages.
        grid: the slide's grid; ``grid.read_mpp`` is the level (resolution) tiles are read at.
        coords: K x 2 int32 (row, col) grid cells, in the order of the returned rows.
        start: index of ``coords[0]`` in the slide's full coordinate list.
        normalize: stain normaliser applied to each tile (picklable), or None.
    """

    path: str
    slide_id: str
    grid: PatchGrid
    coords: np.ndarray
    start: int = 0
    normalize: Callable[[np.ndarray], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.coords)


def tile_features(
    dataset: PatchDataset, encoder: Encoder, batch_size: int, slide_id: str, workers: int = 0
) -> Iterator[np.ndarray]:
    """float16 features (B x D) of the dataset's tiles, batch by batch, in order.

    Raises:
        InputError: a feature overflows float16 (the store's dtype).
    """
    for batch in patch_batches(dataset, batch_size, workers):
        feats = encoder(batch, batch_size=batch_size).numpy()
        half = feats.astype(np.float16)
        if not np.isfinite(half).all():
            raise InputError(
                f"{encoder.label} features of slide {slide_id} overflow float16 "
                f"(max |x| = {np.abs(feats).max():.3g}): normalise the encoder output"
            )
        yield half


def embed_tiles(shard: TileShard, encoder: Encoder, batch_size: int = 32) -> np.ndarray:
    """Embed a shard of tiles: K x D float16 features, row k for ``shard.coords[k]``.

    Pure: reads the tiles from ``shard.path`` (the caller ships coordinates, never pixels) and
    writes nothing. Rows equal the one-process path's when ``shard.start`` is a multiple of
    ``batch_size`` (the same batches) and torch uses the same number of threads.

    Raises:
        InputError: the file is not the slide the grid was laid on, or features overflow.
    """
    dataset = PatchDataset(shard.path, shard.grid, shard.coords, None, shard.normalize)
    parts = list(tile_features(dataset, encoder, batch_size, shard.slide_id))
    if not parts:
        return np.zeros((0, encoder.embed_dim), np.float16)
    return np.concatenate(parts)


def plan_tiles(
    path: str | Path, slide_id: str, options: GridOptions, identity: dict[str, Any]
) -> tuple[Any, dict[str, Any], np.ndarray]:
    """Lay the grid on a slide and find its tissue cells: (open slide, plan, coords).

    ``plan`` is the slide's ``plan.json`` (grid, tissue settings, patch count, the store's
    encoder identity, and the stain source fitted on this slide when ``identity`` has a
    ``stain_target``); ``coords`` K x 2 int32. Reads the slide's thumbnail only.
    """
    from htd_plugins.discovery.stain import PatchNormalizer

    slide, grid, coords = plan_slide(path, options)
    plan = {
        "slide_id": slide_id,
        "grid": grid.to_dict(),
        "min_tissue": options.min_tissue,
        "n_patches": int(len(coords)),
        "embed_dim": int(identity["embed_dim"]),
        "encoder": identity["encoder"],
        "weights_id": identity["weights_id"],
    }
    if identity.get("stain_target") is not None:  # fitted once per slide, before any patch
        target = identity["stain_target"]
        plan["stain_source"] = PatchNormalizer.for_slide(target, slide, grid.read_mpp).source
    return slide, plan, coords


def normalizer_of(plan: dict[str, Any], stain_target: dict[str, Any] | None):
    """The stain normaliser of a planned slide (None without a store stain target)."""
    if stain_target is None:
        return None
    from htd_plugins.discovery.stain import PatchNormalizer

    return PatchNormalizer(stain_target, plan["stain_source"])
