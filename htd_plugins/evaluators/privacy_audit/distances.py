"""Nearest-neighbour distances for the privacy audit (helpers of the ``privacy`` evaluator).

Pixel distance: root-mean-square difference of [0, 1] pixels on a common small grid, over the
pixels a mask keeps (so a conditioning crop's region can be left out exactly). Feature
distance: cosine distance ``1 - cos`` of encoder features. Both are computed with two matrix
products per block, never pairwise loops.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from htd_core.errors import InputError


def _json(raw: Any, key: str) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{key} {raw[:60]!r} is not JSON: {exc}") from None
    return raw


def crop_boxes(meta: Mapping[str, Any]) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the conditioning crops placed in a synthetic image, in its pixels.

    Read from ``meta["crop_provenance"]`` (what the ``crop`` builder records and ``htd
    generate`` writes: per class a mapping with ``placed_x``, ``placed_y``, ``placed_size``)
    and from ``meta["crop_boxes"]``: a list of ``[x, y, w, h]`` or ``{"x", "y", "w", "h"}`` or
    ``{"x", "y", "size"}``. Either may be JSON text, as stored in a manifest.
    """
    boxes: list[tuple[int, int, int, int]] = []
    prov = _json(meta.get("crop_provenance"), "crop_provenance")
    if isinstance(prov, Mapping):
        for entry in prov.values():
            if isinstance(entry, Mapping) and "placed_x" in entry:
                size = int(entry.get("placed_size", entry.get("size", 0)))
                boxes.append((int(entry["placed_x"]), int(entry["placed_y"]), size, size))
    for box in _json(meta.get("crop_boxes"), "crop_boxes") or ():
        if isinstance(box, Mapping):
            w = int(box.get("w", box.get("size", 0)))
            boxes.append((int(box["x"]), int(box["y"]), w, int(box.get("h", box.get("size", 0)))))
        elif isinstance(box, list | tuple) and len(box) == 4:
            boxes.append(tuple(int(v) for v in box))  # type: ignore[arg-type]
        else:
            raise InputError(
                f"crop box {box!r}: use [x, y, w, h] or a mapping with x, y and w/h or size"
            )
    for box in boxes:
        if box[2] <= 0 or box[3] <= 0:
            raise InputError(f"crop box {list(box)} has no area")
    return boxes


def crop_region(meta: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean H x W mask of the conditioning crops (:func:`crop_boxes`), or None if none."""
    region = np.zeros(shape, bool)
    for x, y, w, h in crop_boxes(meta):
        region[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = True
    return region if region.any() else None


def resize_uint8(image: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Square resize of a uint8 image or boolean/index mask."""
    from PIL import Image

    if image.dtype == bool:
        return resize_uint8(image.astype(np.uint8), size, nearest=True).astype(bool)
    if image.shape[:2] == (size, size):
        return image
    mode = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize((size, size), mode))


def region_on_grid(region: np.ndarray, size: int) -> np.ndarray:
    """``region`` on a ``size`` x ``size`` grid, conservatively: a grid pixel is in the region
    when its own footprint or a neighbour's touches it, since resampling filters of the image
    spread each region pixel into the neighbouring grid pixels."""
    from PIL import Image

    frac = np.asarray(Image.fromarray(region.astype(np.float32)).resize((size, size), Image.BOX))
    hit = np.pad(frac > 0, 1)
    out = np.zeros((size, size), bool)
    for dy in range(3):
        for dx in range(3):
            out |= hit[dy : dy + size, dx : dx + size]
    return out


def windows(array: np.ndarray, grid: int) -> list[np.ndarray]:
    """The ``grid`` x ``grid`` non-overlapping windows of an H x W (x C) array, row-major."""
    h, w = array.shape[:2]
    ys = np.linspace(0, h, grid + 1).astype(int)
    xs = np.linspace(0, w, grid + 1).astype(int)
    return [array[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for i in range(grid) for j in range(grid)]


def fill_region(image: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """``image`` with ``region`` painted in the image's mean colour outside it (for encoders)."""
    if region is None or not region.any():
        return image
    out = image.copy()
    keep = ~region
    colour = image[keep].mean(0) if keep.any() else image.reshape(-1, 3).mean(0)
    out[region] = np.round(colour).astype(np.uint8)
    return out


def masked_rms_distances(
    queries: np.ndarray, keep: np.ndarray, references: np.ndarray, block: int = 256
) -> np.ndarray:
    """RMS pixel distance of each query to each reference over the query's kept pixels.

    Args:
        queries: Q x D float pixels in [0, 1].
        keep: Q x D 0/1 weights (1 = compare this value).
        references: R x D float pixels.

    Returns:
        Q x R float64; rows whose ``keep`` is all zero are NaN.
    """
    ref = torch.as_tensor(references, dtype=torch.float64)
    ref2 = ref * ref
    out = np.empty((len(queries), len(references)))
    for start in range(0, len(queries), block):
        q = torch.as_tensor(queries[start : start + block], dtype=torch.float64)
        m = torch.as_tensor(keep[start : start + block], dtype=torch.float64)
        qm = q * m
        sq = (qm * q).sum(1, keepdim=True) - 2 * qm @ ref.T + m @ ref2.T
        count = m.sum(1, keepdim=True)
        d = (sq.clamp_min(0) / count.clamp_min(1)).sqrt()
        d[count.squeeze(1) == 0] = float("nan")
        out[start : start + block] = d.numpy()
    return out


def cosine_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Q x R cosine distances ``1 - cos`` (0 = same direction)."""
    q = torch.nn.functional.normalize(torch.as_tensor(queries, dtype=torch.float64), dim=1)
    r = torch.nn.functional.normalize(torch.as_tensor(references, dtype=torch.float64), dim=1)
    return (1.0 - q @ r.T).clamp_min(0).numpy()


def nearest(
    distances: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of the nearest reference per row; ``exclude`` (Q x R bool) masks pairs
    that must not count (the same source image). Rows with no candidate give (-1, NaN)."""
    d = np.where(np.isnan(distances), np.inf, distances)
    if exclude is not None:
        d = np.where(exclude, np.inf, d)
    idx = d.argmin(1) if d.shape[1] else np.full(len(d), -1)
    best = d[np.arange(len(d)), idx] if d.shape[1] else np.full(len(d), np.inf)
    idx = np.where(np.isfinite(best), idx, -1)
    return idx, np.where(np.isfinite(best), best, np.nan)


def nearest_by_group(
    distances: np.ndarray, groups: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference per query *group* (the windows of one image): the smallest distance
    over the group's rows. Returns (reference column index, distance) per group in sorted
    group order; (-1, NaN) when a group has no candidate."""
    idx, d = nearest(distances, exclude)
    idx_out, d_out = [], []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if np.isnan(d[rows]).all():
            idx_out.append(-1)
            d_out.append(np.nan)
            continue
        best = rows[int(np.nanargmin(d[rows]))]
        idx_out.append(int(idx[best]))
        d_out.append(float(d[best]))
    return np.asarray(idx_out, int), np.asarray(d_out, float)


def summary(values: np.ndarray) -> dict[str, float | int | None]:
    """Count, mean and quantiles of the finite values (None when there are none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": None, "min": None, "q05": None, "median": None, "q95": None}
    q = np.quantile(v, [0.05, 0.5, 0.95])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "q05": float(q[0]),
        "median": float(q[1]),
        "q95": float(q[2]),
    }
