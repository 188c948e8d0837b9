"""Tissue masks on the class-map grid, with tiatoolbox's tissue maskers.

Otsu-based maskers always split an image in two, even a blank one; a mask is therefore kept
only when its "tissue" is clearly darker than its "background" (:data:`MIN_CONTRAST` grey
levels), so an empty slide yields no tissue instead of noise.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from htd_core.errors import InputError

METHODS = ("morphological", "otsu", "none")
#: Minimum difference of mean grey level between background and tissue.
MIN_CONTRAST = 15.0


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(f"tissue={method!r} is not a tissue masker; use one of {list(METHODS)}")
    return method


def tissue_mask(thumbnail: np.ndarray, mpp: float, method: str = "morphological") -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail taken at ``mpp`` um/px.

    Args:
        thumbnail: uint8 H x W x 3.
        mpp: resolution of the thumbnail (sets the morphological kernel, 32 um wide).
        method: ``morphological`` (Otsu, then small-object removal and dilation), ``otsu``, or
            ``none`` (everything is tissue).
    """
    check_method(method)
    if method == "none":
        return np.ones(thumbnail.shape[:2], bool)
    maskers = tiatoolbox_tissuemask()
    masker = (
        maskers.MorphologicalMasker(mpp=mpp)
        if method == "morphological"
        else maskers.OtsuTissueMasker()
    )
    mask = np.asarray(masker.fit_transform(thumbnail[None])[0], bool)
    grey = thumbnail.astype(np.float32).mean(axis=2)
    if not mask.any() or mask.all():
        return mask if mask.all() and grey.std() > MIN_CONTRAST else np.zeros_like(mask)
    if grey[~mask].mean() - grey[mask].mean() < MIN_CONTRAST:
        return np.zeros_like(mask)
    return mask


@functools.cache
def tiatoolbox_tissuemask() -> ModuleType:
    """tiatoolbox's ``tools.tissuemask`` module, without ``tiatoolbox.tools``' package import.

    ``tiatoolbox/tools/__init__.py`` imports every tool, registration models included (about
    10 s of imports); the tissue maskers need none of it, so their file is loaded on its own
    (the regular import is used when the package is already loaded or the file moved).
    """
    name = "tiatoolbox.tools.tissuemask"
    if name in sys.modules:
        return sys.modules[name]
    import tiatoolbox

    path = Path(tiatoolbox.__file__).parent / "tools" / "tissuemask.py"
    spec = importlib.util.spec_from_file_location("_htd_tiatoolbox_tissuemask", path)
    if spec is None or spec.loader is None or not path.is_file():
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resize_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a 2-D array to ``shape`` (rows, cols), cell centres."""
    h, w = array.shape[:2]
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return array[rows[:, None], cols[None, :]]
