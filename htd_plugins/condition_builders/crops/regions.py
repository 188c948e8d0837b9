"""Where a square crop fits inside a class region: integral images, complexity, placement.

Shared by the ``crop`` and ``embedding`` builders and by :class:`CropBank`. Everything is
vectorised with numpy: one integral image per class, then every candidate square of a side
is scored at once (four array slices), so a 256 x 256 mask with 4 classes takes about a
millisecond.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def class_integrals(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Summed-area tables K x (H+1) x (W+1) of each class's indicator (int32).

    ``out[k, y, x]`` counts class-``k`` pixels in ``mask[:y, :x]``; ignored pixels (any value
    >= K) count for no class.
    """
    h, w = mask.shape
    onehot = mask[None, :, :] == np.arange(num_classes)[:, None, None]
    out = np.zeros((num_classes, h + 1, w + 1), np.int32)
    rows = np.cumsum(onehot, axis=2, dtype=np.int32)  # contiguous axis first: faster
    np.cumsum(rows, axis=1, out=out[:, 1:, 1:])
    return out


def window_counts(integral: np.ndarray, side: int) -> np.ndarray:
    """Class pixels in every side x side window: (H-side+1) x (W-side+1), top-left indexed."""
    s = side
    return integral[s:, s:] - integral[:-s, s:] - integral[s:, :-s] + integral[:-s, :-s]


def region_complexity(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Shape complexity of each class region in [0, 1] (0 for absent classes).

    ``complexity = clip(1 - 4 * sqrt(area) / perimeter, 0, 1)``, where ``perimeter`` counts pixel
    edges between the class and any other label inside the patch (the patch border is not an
    edge). A square blob scores 0, a disc about 0.11, a region split into many small islands or
    thin strands approaches 1. It is scale-free, so the same tissue layout gets the same crop
    size at any patch size.
    """
    k = num_classes
    m = mask.astype(np.int64, copy=False)
    m = np.where(m < k, m, k)  # ignore -> extra label k (its edges count for the class)
    horiz = m[:, 1:] != m[:, :-1]
    vert = m[1:, :] != m[:-1, :]
    edges = np.bincount(m[:, 1:][horiz], minlength=k + 1)[:k]
    edges += np.bincount(m[:, :-1][horiz], minlength=k + 1)[:k]
    edges += np.bincount(m[1:, :][vert], minlength=k + 1)[:k]
    edges += np.bincount(m[:-1, :][vert], minlength=k + 1)[:k]
    area = np.bincount(m.ravel(), minlength=k + 1)[:k]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - 4.0 * np.sqrt(area) / edges
    return np.where((area > 0) & (edges > 0), np.clip(score, 0.0, 1.0), 0.0)


def fits(integral: np.ndarray, side: int, min_inside: float) -> np.ndarray:
    """Boolean map of top-left corners whose side x side square is >= ``min_inside`` class."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    if side < 1 or side > min(h, w):
        return np.zeros((0, 0), bool)
    need = math.ceil(min_inside * side * side - 1e-9)
    return window_counts(integral, side) >= need


def largest_fitting_side(integral: np.ndarray, side: int, floor: int, min_inside: float) -> int:
    """Largest side in [floor, side] whose square fits the region, else 0.

    Whether a square fits is not monotone in its side (a 10 x 10 region with 10 scattered
    holes holds a 10 px square at exactly 90% but no 7, 8 or 9 px one at 90%), so a binary
    search can miss the answer. This scans downwards from the largest side the region's area
    allows (``sqrt(area / min_inside)``); each side costs one pass over the summed-area table.
    """
    area = int(integral[-1, -1])
    if area == 0:
        return 0
    top = min(side, math.isqrt(int(area / min_inside)) + 1)  # + 1: float rounding
    for s in range(top, max(floor, 1) - 1, -1):
        if fits(integral, s, min_inside).any():
            return s
    return 0


def choose_square(
    integral: np.ndarray,
    side: int,
    floor: int,
    min_inside: float,
    shrink: bool,
    rng: np.random.Generator,
) -> tuple[int, int, int] | None:
    """A random (y, x, side) square inside the region; shrinks down to ``floor`` when allowed.

    Returns None when no square of at least ``floor`` (or exactly ``side`` without shrinking)
    holds ``min_inside`` of the class.
    """
    ok = fits(integral, side, min_inside)
    if not ok.any():
        if not shrink:
            return None
        side = largest_fitting_side(integral, side - 1, floor, min_inside)
        if side == 0:
            return None
        ok = fits(integral, side, min_inside)
    ys, xs = np.nonzero(ok)
    i = int(rng.integers(len(ys)))
    return int(ys[i]), int(xs[i]), side


def choose_elsewhere(
    integral: np.ndarray,
    side: int,
    min_inside: float,
    source: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """A random valid position for a side x side square, preferring ones that do not overlap
    ``source`` (then any other valid one, then ``source`` itself)."""
    ys, xs = np.nonzero(fits(integral, side, min_inside))
    if len(ys) == 0:
        return source
    far = np.maximum(np.abs(ys - source[0]), np.abs(xs - source[1])) >= side
    pool = np.flatnonzero(far)
    if len(pool) == 0:
        pool = np.flatnonzero((ys != source[0]) | (xs != source[1]))
    if len(pool) == 0:
        return source
    i = int(pool[rng.integers(len(pool))])
    return int(ys[i]), int(xs[i])


def center_square(image: np.ndarray, side: int) -> np.ndarray:
    """The centred side x side part of an H x W x 3 image (side <= min(H, W))."""
    h, w = image.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return image[y : y + side, x : x + side]


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """Resize a square uint8 crop to side x side (antialiased bilinear; for mpp changes)."""
    if image.shape[0] == side:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))


def size_range(d_range: Any) -> tuple[int, int]:
    """(min, max) crop sides from a pair of integers with 0 < min <= max (InputError else)."""
    from htd_core.errors import InputError

    try:
        lo, hi = (int(v) for v in d_range)
    except (TypeError, ValueError):
        raise InputError(f"crop: d_range={d_range!r} must be two integers (min, max)") from None
    if not 0 < lo <= hi:
        raise InputError(f"crop: d_range={d_range!r} must satisfy 0 < min <= max")
    return lo, hi
