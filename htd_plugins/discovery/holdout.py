"""The held-out split of distillation: no held-out patch shares pixels with a training patch.

Two ways (``holdout``):

* ``slides``: whole slides are held out (a hash of the opaque slide id decides), so train and
  validation never share a slide. Used by ``auto`` from :data:`MIN_SLIDES` slides on.
* ``blocks``: square blocks of ``block`` x ``block`` grid cells are held out (a hash of slide id
  and block decides). A patch is ``patch_size`` px wide on a grid of ``stride`` px, so the
  patches of cells (r, c) and (r', c') overlap iff |r - r'| < p/s and |c - c'| < p/s; with
  ``stride < patch_size`` a training patch next to a held-out block would share pixels with
  it. So a **margin** of m = ceil(p/s) - 1 cells around every held-out block is left out of
  training (used by neither side), per slide (its own grid).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from htd_core.errors import InputError

HOLDOUTS = ("auto", "blocks", "slides")
#: ``auto`` holds out whole slides from this many slides on (fewer: blocks with a margin).
MIN_SLIDES = 5


def _hashed(key: str, fraction: float) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


@dataclass
class Split:
    """``val`` and ``train`` (boolean per patch, disjoint; patches in neither lie in a margin)
    and a description for the classifier's config."""

    val: np.ndarray
    train: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def margin_cells(patch_size: int, stride: int) -> int:
    """Cells around a held-out block whose patches would overlap it: ceil(p/s) - 1."""
    return max(0, math.ceil(patch_size / stride) - 1)


def split_patches(
    slide_ids: np.ndarray,
    coords: np.ndarray,
    grids: dict[str, dict[str, Any]],
    *,
    block: int = 8,
    fraction: float = 0.2,
    holdout: str = "auto",
) -> Split:
    """Held-out and training patches.

    Args:
        slide_ids: per patch, its opaque slide id (N).
        coords: per patch, its grid cell (row, col), N x 2.
        grids: slide id -> its grid (``patch_size``, ``stride``; a store entry's ``grid``).
        block: held-out block side in cells (``blocks``).
        fraction: share of slides or blocks held out.
        holdout: ``auto``, ``blocks`` or ``slides``.

    Raises:
        InputError: bad options, or a split with nothing held out or nothing to train on.
    """
    if not 0 < fraction < 1:
        raise InputError(f"val_fraction={fraction} must be in (0, 1)")
    if holdout not in HOLDOUTS:
        raise InputError(f"holdout={holdout!r}: use one of {', '.join(HOLDOUTS)}")
    if not isinstance(block, int) or block < 1:
        raise InputError(f"block={block!r} must be a positive integer (grid cells)")
    slide_ids, coords = np.asarray(slide_ids), np.asarray(coords, np.int64).reshape(-1, 2)
    names = sorted(set(slide_ids.tolist()))
    if holdout == "slides" or (holdout == "auto" and len(names) >= MIN_SLIDES):
        held = [s for s in names if _hashed(s, fraction)]
        val = np.isin(slide_ids, held)
        split = Split(val, ~val, {"holdout": "slides", "val_slides": held})
    else:
        val, train = np.zeros(len(coords), bool), np.zeros(len(coords), bool)
        margins = {}
        for sid in names:
            here = np.flatnonzero(slide_ids == sid)
            g = grids[sid]
            m = margin_cells(int(g["patch_size"]), int(g["stride"]))
            v, t = _block_split(sid, coords[here], block, fraction, m)
            val[here], train[here], margins[sid] = v, t, m
        left = int((~val & ~train).sum())
        split = Split(val, train, {"holdout": "blocks", "block": block, "margin_cells": margins,
                                   "margin_patches": left})  # fmt: skip
    if not split.val.any() or not split.train.any():
        raise InputError(
            f"the held-out split ({split.info['holdout']}) leaves {int(split.val.sum())} held-out "
            f"and {int(split.train.sum())} training patches: change --block, --val-fraction or "
            "--holdout"
        )
    return split


def _block_split(
    sid: str, coords: np.ndarray, block: int, fraction: float, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """(val, train) of one slide's patches: held-out blocks, and the rest minus the margin."""
    if not len(coords):
        return np.zeros(0, bool), np.zeros(0, bool)
    hi = (coords.max(axis=0) + margin) // block + 1
    held = np.zeros((int(hi[0]) + 1, int(hi[1]) + 1), np.int64)  # +1: room below 0 (shifted)
    for br in range(held.shape[0]):
        for bc in range(held.shape[1]):
            held[br, bc] = _hashed(f"{sid}:{br - 1}:{bc - 1}", fraction)
    sat = np.zeros((held.shape[0] + 1, held.shape[1] + 1), np.int64)
    sat[1:, 1:] = held.cumsum(0).cumsum(1)
    own = held[coords[:, 0] // block + 1, coords[:, 1] // block + 1].astype(bool)
    lo_b = (coords - margin) // block + 1  # blocks touched by the patch's margin, inclusive
    hi_b = (coords + margin) // block + 2
    near = sat[hi_b[:, 0], hi_b[:, 1]] - sat[lo_b[:, 0], hi_b[:, 1]]
    near = near - sat[hi_b[:, 0], lo_b[:, 1]] + sat[lo_b[:, 0], lo_b[:, 1]]
    return own, ~own & (near == 0)
