"""The one way htd lists and reads image files, and the one opaque-id rule.

Every reader of a folder of images (tile folders, mask folders, evaluation sets, autoencoder
training data, datasets) goes through :func:`image_files` and :func:`read_rgb` /
:func:`read_index_mask`, so a file format or mode is handled the same everywhere. Every
identifier written to an output for a slide or source image goes through :func:`opaque_id`:
a hash, never a file stem or path (a TCGA-style file name is a patient barcode).

Pillow is imported inside the functions (``htd_core`` stays light at import time).
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

import numpy as np

from htd_core.errors import InputError

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def opaque_id(name: str | Path) -> str:
    """16 hex digits of SHA-256 of a file's *name* (no folder): stable across machines and
    folders, reveals neither the name nor the path. The id of every slide and source image.

    >>> opaque_id("/data/TCGA-CR-7395-01A-01-TS1.svs") == opaque_id("TCGA-CR-7395-01A-01-TS1.svs")
    True
    """
    return hashlib.sha256(Path(str(name)).name.encode()).hexdigest()[:16]


def image_files(folder: str | Path, match: str | None = None) -> list[Path]:
    """Image files directly in ``folder`` (suffixes :data:`IMAGE_SUFFIXES`), sorted by name.

    Args:
        folder: the folder to list.
        match: keep only names matching this shell glob (``"train_*"``).

    Raises:
        InputError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder: give a folder of images")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and (match is None or fnmatch.fnmatch(p.name, match))
    )


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 H x W x 3 RGB.

    Raises:
        InputError: the file cannot be read as an image (names the file).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def read_index_mask(path: str | Path) -> np.ndarray:
    """A label mask file as an integer H x W array of its stored values (class codes).

    A grey mask stored as RGB(A) with identical colour channels (CAMELYON's JPEG masks) is
    read as its one channel; any other multi-channel image is refused.

    Raises:
        InputError: the file cannot be read, or it is not single-channel.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            mask = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read mask {path}: {exc}") from None
    if mask.ndim == 3 and mask.shape[2] in (3, 4):
        grey = mask[..., 0]
        if (mask[..., 1] == grey).all() and (mask[..., 2] == grey).all():
            return np.ascontiguousarray(grey)
    if mask.ndim != 2:
        raise InputError(
            f"mask {path} has {mask.shape[2]} channels: a label mask holds one class code per "
            "pixel (an index PNG)"
        )
    return mask
