"""Pseudo semantic maps: every tissue patch -> phenotype, written at every granularity.

Layout (one folder per granularity, so a folder is one class set)::

    maps/tree.json                 merge tree + levels (the curriculum reads it)
    maps/k005/classes.json         ClassMap of that level (names phenotype_00.., colours, 255)
    maps/k005/<slide_id>.png       uint8, one pixel per grid cell over the full slide, 255 = background
    maps/k005/<slide_id>.preview.png  the same in class colours, enlarged, with a legend (to look at)
    maps/k005/<slide_id>.json      sidecar: names, downsample, k, patch size, stride, mpp...
    maps/k005/<slide_id>.overlay.png, .gallery.png   when the slide file is given: the map over
                                   the slide thumbnail, example patches per phenotype
                                   (:mod:`~htd_plugins.discovery.pictures`)
    maps/slide_ids.csv             when slide files are given: id -> file name, local only
                                   (:mod:`~htd_plugins.discovery.slide_ids`)

``<slide_id>`` is the slide's opaque id (:func:`htd_core.images.opaque_id` of its file name),
never its name or path; ``htd discover embed`` prints ``id <- file name`` on the terminal and
keeps the same list in the local-only ``slide_ids.csv`` of its store.

Map pixel (r, c) covers level-0 pixels [c*s, (c+1)*s) x [r*s, (r+1)*s) with
s = ``downsample`` (= ``cell_size_base``; the grid covers the slide, so the last row/column
may overhang it). ``names`` + ``downsample`` are what the slide samplers' label-mask reader
takes (``label_mask=maps/k005/<slide_id>.png``, ``classes=`` the level's names).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.images import read_index_mask
from htd_core.io import atomic_save_image, atomic_write_json
from htd_core.types import IGNORE_INDEX, ClassMap
from htd_plugins.discovery.clustering import Phenotypes
from htd_plugins.discovery.grid import PatchGrid
from htd_plugins.discovery.slide_ids import record_slide_ids
from htd_plugins.discovery.store import check_finite, open_stores
from htd_plugins.pictures import map_preview
from htd_plugins.slides import class_names, palette

#: Suffix of the colour preview written beside each map (class colours, enlarged, legend).
PREVIEW = ".preview.png"


def level_dir(out: str | Path, k: int) -> Path:
    return Path(out) / f"k{k:03d}"


def level_class_map(k: int) -> ClassMap:
    """Class names ``phenotype_00``.. and colours of granularity ``k``."""
    return ClassMap(class_names(k), tuple(palette(k)), IGNORE_INDEX)


def leaf_grid(grid: PatchGrid, coords: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """rows x cols uint8 map of leaf ids, 255 where there is no tissue patch."""
    out = np.full((grid.rows, grid.cols), IGNORE_INDEX, np.uint8)
    if len(coords):
        out[coords[:, 0], coords[:, 1]] = leaves.astype(np.uint8)
    return out


def maps_done(out: str | Path, slide_id: str, phenotypes: Phenotypes) -> bool:
    """True when every level's sidecar of ``slide_id`` exists for this clustering."""
    import json

    for k in phenotypes.levels:
        side = level_dir(out, k) / f"{slide_id}.json"
        if (
            not side.exists()
            or json.loads(side.read_text()).get("clustering_id") != phenotypes.clustering_id
        ):
            return False
    return True


def write_slide_maps(
    out: str | Path,
    slide_id: str,
    grid: PatchGrid,
    coords: np.ndarray,
    leaves: np.ndarray,
    phenotypes: Phenotypes,
    source: str,
) -> dict[int, Path]:
    """Write one slide's maps at every level (image first, sidecar last); returns k -> png."""
    if phenotypes.tree.n_leaves >= IGNORE_INDEX:
        raise InputError(f"{phenotypes.tree.n_leaves} phenotypes do not fit a uint8 map (max 254)")
    leaf_map = leaf_grid(grid, coords, leaves)
    written = {}
    for k in phenotypes.levels:
        folder = level_dir(out, k)
        class_map = level_class_map(k)
        if not (folder / "classes.json").exists():
            atomic_write_json(folder / "classes.json", class_map.to_dict())
        labels = phenotypes.tree.coarsen(leaf_map, k).astype(np.uint8)
        counts = np.bincount(labels[labels != IGNORE_INDEX], minlength=k)[:k]
        total = max(int(counts.sum()), 1)
        atomic_save_image(folder / f"{slide_id}.png", labels)
        # the map has one pixel per grid cell (black in a viewer): a colour preview beside it
        atomic_save_image(folder / f"{slide_id}{PREVIEW}", map_preview(labels, class_map))
        sidecar: dict[str, Any] = {
            "slide_id": slide_id,
            "k": k,
            "names": list(class_map.names),
            "classes": class_map.to_dict(),
            "ignore_index": IGNORE_INDEX,
            "grid_shape": [grid.rows, grid.cols],
            "patch_size": grid.patch_size,
            "stride": grid.stride,
            "read_mpp": grid.read_mpp,
            "slide_mpp": grid.slide_mpp,
            "level": 0,
            "slide_dims": list(grid.slide_dims),
            "cell_size_base": grid.cell_size_base,
            "downsample": grid.cell_size_base,
            "map_mpp": grid.stride * grid.read_mpp,
            "composition": {
                n: round(int(c) / total, 6) for n, c in zip(class_map.names, counts, strict=True)
            },
            "n_tissue_cells": int(counts.sum()),
            "leaf_to_class": phenotypes.tree.groups[k].tolist(),
            "source": source,
            "encoder": phenotypes.encoder,
            "weights_id": phenotypes.weights_id,
            "clustering_id": phenotypes.clustering_id,
        }
        atomic_write_json(folder / f"{slide_id}.json", sidecar)
        written[k] = folder / f"{slide_id}.png"
    return written


def write_tree(out: str | Path, phenotypes: Phenotypes) -> None:
    atomic_write_json(
        Path(out) / "tree.json",
        {
            "clustering_id": phenotypes.clustering_id,
            "encoder": phenotypes.encoder,
            "weights_id": phenotypes.weights_id,
            "tree": phenotypes.tree.to_dict(),
        },
    )


def maps_from_stores(
    store_roots: list[str | Path],
    clustering: str | Path | Phenotypes,
    out: str | Path,
    *,
    slide_ids: list[str] | None = None,
    slide_files: Mapping[str, Path] | None = None,
    progress: bool = True,
) -> dict[str, dict[int, Path]]:
    """Teacher path: nearest centroid of every stored embedding; returns slide id -> k -> png.

    ``slide_ids`` (opaque ids, see :func:`htd_core.images.opaque_id`) limits the slides.
    ``slide_files`` (opaque id -> slide file): those slides also get their pictures
    (:func:`draw_pictures`) and a row in ``out/slide_ids.csv``.
    """
    from tqdm.auto import tqdm

    phenotypes = clustering if isinstance(clustering, Phenotypes) else Phenotypes.load(clustering)
    stores = open_stores(list(store_roots))
    for store in stores:
        store.check_encoder(phenotypes.encoder, phenotypes.weights_id)
    entries = [
        e for s in stores for e in s.entries() if slide_ids is None or e.slide_id in slide_ids
    ]
    if slide_ids is not None:
        missing = sorted(set(slide_ids) - {e.slide_id for e in entries})
        if missing:
            raise InputError(f"slides {missing} are not complete in the stores: embed them first")
    check_finite(entries)  # a NaN row would get phenotype 0 silently; before anything is written
    write_tree(out, phenotypes)
    result = {}
    for entry in tqdm(
        entries, desc="pseudo maps", unit="slide", disable=not progress, file=sys.stderr
    ):
        grid = PatchGrid.from_dict(entry.meta["grid"])
        leaves = phenotypes.assign(entry.embeddings())
        source = f"teacher:{phenotypes.encoder}"
        result[entry.slide_id] = write_slide_maps(
            out, entry.slide_id, grid, entry.coords(), leaves, phenotypes, source
        )
        if slide_files and entry.slide_id in slide_files:
            draw_pictures(slide_files[entry.slide_id], entry.slide_id, grid, result[entry.slide_id])
    if slide_files:
        record_slide_ids(out, {i: p.name for i, p in slide_files.items() if i in result})
    return result


def draw_pictures(
    path: str | Path, slide_id: str, grid: PatchGrid, maps: Mapping[int, Path]
) -> dict[int, tuple[Path, Path]]:
    """The overlay on the slide thumbnail and the phenotype gallery beside each level's map
    (k -> png) of one slide; see :mod:`htd_plugins.discovery.pictures`."""
    from htd_plugins.discovery.pictures import draw_slide_pictures

    levels = {k: (png, level_class_map(k)) for k, png in maps.items()}
    return draw_slide_pictures(path, grid, levels, slide_id)


def read_map(png: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A pseudo map (uint8 rows x cols, 255 = background) and its sidecar."""
    import json

    png = Path(png)
    side = png.with_suffix(".json")
    if not png.exists() or not side.exists():
        raise InputError(f"pseudo map {png} or its sidecar {side.name} is missing")
    return read_index_mask(png), json.loads(side.read_text())
