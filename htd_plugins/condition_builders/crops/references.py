"""Crops that cannot be copied: each class's crop comes from the SAME source image as the
target sample but from OUTSIDE the target's window (``placement="outside"``).

A crop cut from the target patch itself is the answer the model is asked to produce: the
target image contains its own condition, so a model can learn to copy it back, and at 64 px a
class region usually holds one square at most, so moving it ("elsewhere") still overlaps its
cut. Here the crop is an appearance reference from the same source (same stain, same
patient) that the target window does not contain; when the source has none (every crop of
that class overlaps the window, or the source has no crop of the class), one from another
training source of that class, and the provenance says so.

Geometry: a sample cut from a source tile records ``tile_id`` (opaque id of the tile file),
``x``, ``y`` (top-left in the tile, px) and ``patch_size`` (its side in the tile, px); its
pixels may have been resized since (the experiment's patches are cut at 160 px and shown at
64), so positions inside the sample are scaled by ``patch_size / side``. Two boxes of the same
tile overlap when their rectangles intersect; boxes of different tiles never do. A sample
without that geometry (a slide sampler's window, a dataset row without it) is compared by its
source id only: every crop of its source counts as overlapping, so its crop comes from another
source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_plugins.condition_builders.crops.regions import center_square

Box = tuple[float, float, float]  # x, y, side in the source tile's pixels


def window_of(meta: Mapping[str, Any], size: tuple[int, int]) -> tuple[str, Box] | None:
    """(tile id, window box) of a sample in its source tile, or None when its meta does not
    say (``tile_id``, ``x``, ``y``; ``patch_size`` defaults to the sample's side)."""
    tile = meta.get("tile_id")
    if tile in (None, "") or meta.get("x") in (None, "") or meta.get("y") in (None, ""):
        return None
    side = float(meta.get("patch_size") or min(size))
    return str(tile), (float(meta["x"]), float(meta["y"]), side)


def source_box(
    meta: Mapping[str, Any], size: tuple[int, int], square: tuple[int, int, int]
) -> tuple[str, list[float]] | None:
    """(tile id, [x, y, side]) of a square (y, x, side in the sample's pixels) in the sample's
    source tile, or None without the sample's geometry."""
    window = window_of(meta, size)
    if window is None:
        return None
    tile, (wx, wy, wside) = window
    scale = wside / float(min(size))
    y, x, side = square
    return tile, [round(wx + x * scale, 3), round(wy + y * scale, 3), round(side * scale, 3)]


def overlaps(a: Box, b: Box) -> bool:
    """Whether two square boxes (x, y, side) intersect (touching edges do not)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[2] and b[1] < a[1] + a[2]


def crop_overlaps_window(provenance: Mapping[str, Any], meta: Mapping[str, Any],
                         size: tuple[int, int]) -> bool:  # fmt: skip
    """Whether a placed crop (its provenance) holds pixels of the target sample's window: a
    crop cut from the sample itself always does; a bank crop does when it comes from the same
    tile and its box intersects the window, or, without geometry on either side, when it comes
    from the same source image."""
    if provenance.get("source") == "sample":
        return True
    if provenance.get("source") != "bank":
        return False
    window = window_of(meta, size)
    box = provenance.get("box")
    if window is None or box is None or provenance.get("tile_id") in (None, ""):
        return str(provenance.get("slide_id", "")) == str(meta.get("slide_id", "")) != ""
    tile, target = window
    return str(provenance["tile_id"]) == tile and overlaps(tuple(box), target)


def draw_outside(
    crops: Sequence[Any], meta: Mapping[str, Any], size: tuple[int, int], rng: np.random.Generator
) -> tuple[int | None, str | None]:
    """The index in ``crops`` (one class's bank crops) of the crop for a target sample: from
    its source image and outside its window when any is; else from another source. Returns
    (index, why it is from another source, or None), or (None, why) when no crop can serve it
    (the class is then left empty, as a region too small is).

    Raises:
        InputError: the target names no source (``slide_id``).
    """
    source = str(meta.get("slide_id", ""))
    if not source:
        raise InputError(
            "crop: placement='outside' needs each sample's source id (meta slide_id, which the "
            "tiles and slide samplers record) to draw its crop from the same source outside its "
            "window; this sample has none: use placement='elsewhere', or sample with a sampler "
            "that records source ids"
        )
    same = [i for i, c in enumerate(crops) if str(c.provenance.get("slide_id", "")) == source]
    outside = [
        i for i in same
        if not crop_overlaps_window({"source": "bank", **crops[i].provenance}, meta, size)
    ]  # fmt: skip
    if outside:
        return outside[int(rng.integers(len(outside)))], None
    others = [i for i, c in enumerate(crops) if str(c.provenance.get("slide_id", "")) != source]
    why = ("every crop of this class from the source overlaps the target window" if same
           else "the source has no crop of this class")  # fmt: skip
    if not others:
        return None, f"{why}, and no other source has one"
    return others[int(rng.integers(len(others)))], f"another source: {why}"


def placed_crop(
    provenance: Any, class_name: str, bank: Any, image: np.ndarray | None, mpp: float | None = None
) -> np.ndarray | None:
    """The pixels a crop builder placed (float64 d x d x 3), read back from its provenance: a
    bank crop (``bank_index``) trimmed to its centre as the builder trims it, or a crop cut
    from the sample (``image``, the sample's pixels). None when absent, empty, or resized when
    placed (a bank crop of another ``mpp`` than ``mpp``, the sample's)."""
    if not isinstance(provenance, Mapping) or "placed_size" not in provenance:
        return None
    p, d = provenance, int(provenance["placed_size"])
    if p.get("source") == "sample" and image is not None and int(p["size"]) == d:
        x, y = int(p["x"]), int(p["y"])
        return image[y : y + d, x : x + d].astype(np.float64)
    if p.get("source") == "bank" and bank is not None and "bank_index" in p:
        crop = np.asarray(bank.crops(class_name)[int(p["bank_index"])].image)
        if len(crop) < d or (mpp is not None and p.get("mpp") not in (None, mpp)):
            return None
        return center_square(crop, d).astype(np.float64)
    return None
