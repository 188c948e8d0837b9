"""A tile's mask codes as class indices, and the windows the ``tiles`` sampler cuts from it
(the whole tile, or patches that pass the composition rule of the slide samplers)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from htd_core import ClassMap
from htd_core.errors import InputError
from htd_plugins.slides.composition import CompositionRule, fractions, window_counts


def code_lut(
    path: Path,
    codes: np.ndarray,
    code_names: dict[int, str],
    class_map: ClassMap,
    unknown_labels: str,
) -> np.ndarray:
    """Lookup table mask code -> class index (ignore index for ``@ignore`` and unknown codes).

    Raises:
        InputError: ``codes`` holds a code that names no class and ``unknown_labels="error"``.
    """
    lut = np.full(max(int(codes.max()) + 1, 256), class_map.ignore_index, np.int64)
    bad = []
    for code in np.unique(codes):
        name = code_names.get(int(code))
        if name in class_map.names:
            lut[code] = class_map.names.index(name)
        elif name != "@ignore" and int(code) != class_map.ignore_index:
            bad.append(int(code))
    if bad and unknown_labels == "error":
        raise InputError(
            f"mask {path} has codes {bad} that map to no class ({code_names}): add them "
            "to classes, or set unknown_labels='ignore' (or threshold for grey masks)"
        )
    return lut


def tile_windows(
    mask: np.ndarray,
    n_classes: int,
    rule: CompositionRule | None,
    patch_size: int | None,
    stride: int | None,
) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of the whole tile or of its cut patches that pass the rule."""
    h, w = mask.shape
    k = n_classes
    if patch_size is None:
        if rule is not None:
            counts = np.bincount(mask[mask < k].astype(np.int64), minlength=k)[None, :k]
            if not rule.accept(*fractions(counts, h * w))[0]:
                return []
        return [(0, 0, w, h)]
    size, stride = patch_size, stride or patch_size
    if size > min(h, w):
        return []
    ys, xs = np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    xy = np.stack([yy.ravel(), xx.ravel()], axis=1)
    if rule is not None:
        counts = window_counts(mask, k, xy, size, math.gcd(size, stride))
        xy = xy[rule.accept(*fractions(counts, size * size))]
    return [(int(c), int(r), size, size) for r, c in xy]
