"""Split tile sets by source image, never by tile.

Tiles cut from one image (GlaS ``testA_10_r0_c0`` ... ``testA_10_r1_c1``) share tissue, stain
and patient; putting some in training and others in testing leaks the test set into training.
Every split here first maps each tile to its *source* and then assigns whole sources.

Standard library and numpy only, so samplers, evaluators and scripts can all use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, TypeVar

import numpy as np

from htd_core.errors import InputError

T = TypeVar("T")

#: Tile suffixes that name a position inside a source image: ``_r0_c1`` (GlaS), ``_x512_y1024``,
#: ``_tile12``/``_patch_3``. Only the last one is stripped.
TILE_SUFFIX = re.compile(r"(_r\d+_c\d+|_x\d+_y\d+|_(?:tile|patch)_?\d+)$")


def source_id(name: str) -> str:
    """The source image of a tile name: folder and extension dropped, tile suffix stripped.

    >>> source_id("glas/images/testA_10_r1_c0.png")
    'testA_10'
    """
    stem = PurePath(str(name)).stem if str(name) else ""
    return TILE_SUFFIX.sub("", stem) or stem


def sample_source(meta: Mapping[str, Any]) -> str:
    """Source of a sample from its ``meta``: an explicit ``source_id``/``source``, else the tile
    suffix stripped from ``slide_id`` or ``image``; empty when the meta names nothing."""
    if meta.get("source_id") not in (None, ""):
        return str(meta["source_id"])
    if meta.get("source") not in (None, ""):
        return str(meta["source"])
    for key in ("slide_id", "image"):
        if meta.get(key) not in (None, ""):
            return source_id(str(meta[key]))
    return ""


#: Keys of a generated sample's ``meta`` (and manifest columns of ``htd generate``): the opaque
#: source id of the layout it was generated from, and those of the images its crops came from.
LAYOUT_SOURCE = "layout_source_id"
CROP_SOURCES = "crop_source_ids"
_OPAQUE = re.compile(r"^[0-9a-f]{16}$")


def opaque_source(value: str) -> str:
    """A source id in opaque form, the one rule both sides of a leakage check use: ``value``
    itself when it already is an opaque id (16 hex digits, :func:`htd_core.images.opaque_id`),
    else the opaque id of its :func:`source_id` (a file or tile name); ``""`` stays ``""``.

    >>> opaque_source("glas/images/testA_10_r1_c0.png") == opaque_source("testA_10")
    True
    """
    from htd_core.images import opaque_id

    value = str(value or "")
    if not value or _OPAQUE.match(value):
        return value
    return opaque_id(source_id(value))


def layout_source(meta: Mapping[str, Any]) -> str:
    """Opaque source id of the image a sample (or a layout) comes from (:func:`sample_source`
    through :func:`opaque_source`; an explicit :data:`LAYOUT_SOURCE` wins); ``""`` if unknown."""
    if meta.get(LAYOUT_SOURCE) not in (None, ""):
        return opaque_source(str(meta[LAYOUT_SOURCE]))
    return opaque_source(sample_source(meta))


def crop_sources(provenance: Mapping[str, Any] | None) -> list[str]:
    """Sorted opaque source ids of the crops in a crop provenance (class -> entry with
    ``slide_id``); explicit crops and empty classes name no source."""
    ids = {
        opaque_source(str(entry["slide_id"]))
        for entry in (provenance or {}).values()
        if isinstance(entry, Mapping) and entry.get("slide_id") not in (None, "")
    }
    return sorted(i for i in ids if i)


def group_indices(keys: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """Indices of ``keys`` grouped by value, groups in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def split_by_source(
    sources: Sequence[str],
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Random train/test split of indices with every source wholly on one side.

    Args:
        sources: one source id per item (see :func:`source_id`, :func:`sample_source`).
        test_fraction: fraction of *sources* put in the test side, rounded, at least one source
            on each side when there are two or more.
        seed: the shuffle seed; the same inputs and seed give the same split.

    Returns:
        (train indices, test indices), each sorted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction={test_fraction}: use a value strictly between 0 and 1")
    groups = group_indices(list(sources))
    if len(groups) < 2:
        raise InputError(
            f"cannot split {len(sources)} items by source: they come from {len(groups)} source "
            "image(s); a train/test split needs at least two (or give a held-out set explicitly)"
        )
    names = sorted(groups, key=str)
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = min(max(round(test_fraction * len(names)), 1), len(names) - 1)
    test_names = {names[i] for i in order[:n_test]}
    train = sorted(i for n in names if n not in test_names for i in groups[n])
    test = sorted(i for n in test_names for i in groups[n])
    return train, test


def split_by_prefix(
    names: Sequence[str], prefixes: Mapping[str, Sequence[str]]
) -> dict[str, list[int]]:
    """Indices per named split by file-name prefix (the official GlaS split:
    ``{"train": ["train_"], "test": ["testA_", "testB_"]}``). Names matching no prefix are
    left out; a name matching two splits is an error."""
    out: dict[str, list[int]] = {split: [] for split in prefixes}
    for i, name in enumerate(names):
        stem = PurePath(str(name)).name
        hits = [s for s, pre in prefixes.items() if any(stem.startswith(p) for p in pre)]
        if len(hits) > 1:
            raise InputError(f"{name!r} matches the prefixes of splits {hits}: make them disjoint")
        if hits:
            out[hits[0]].append(i)
    return out


def check_disjoint(train: Sequence[str], test: Sequence[str]) -> None:
    """Raise when a source appears on both sides (lists the first few shared sources)."""
    shared = sorted(set(train) & set(test))
    if shared:
        raise InputError(
            f"{len(shared)} source image(s) are in both train and test, e.g. {shared[:5]}: "
            "split by source image (htd_core.splits.split_by_source), never by tile"
        )


def partition(items: Sequence[T], indices: Sequence[int]) -> list[T]:
    """``[items[i] for i in indices]`` (readable at call sites)."""
    return [items[i] for i in indices]


def sources_of(items: Sequence[Any], key: Callable[[Any], str] | None = None) -> list[str]:
    """Source id per item: ``key(item)``, else :func:`sample_source` of ``item.meta``, else
    :func:`source_id` of the item as a name."""
    if key is not None:
        return [key(x) for x in items]
    out = []
    for x in items:
        meta = getattr(x, "meta", None)
        out.append(sample_source(meta) if isinstance(meta, Mapping) else source_id(str(x)))
    return out


def spread_by_source(sources: Sequence[str], limit: int | None, seed: int = 0) -> list[int]:
    """Indices of at most ``limit`` items, spread over their source images: the sources in a
    seeded order, one item of each in turn (each source's items in a seeded order) until
    ``limit`` are taken, returned in the items' order. Every index when ``limit`` is None or
    not below ``len(sources)``. (The first N files of a folder are often tiles of one image.)
    """
    n = len(sources)
    if limit is None or limit >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    groups = list(group_indices(list(sources)).values())
    queues = [[group[int(j)] for j in rng.permutation(len(group))] for group in groups]
    queues = [queues[int(g)] for g in rng.permutation(len(queues))]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return sorted(chosen)
