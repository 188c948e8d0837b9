"""The one way htd lists and reads image files, the one pixel conversion, the one opaque id.

Every reader of a folder of images (tile folders, mask folders, evaluation sets, autoencoder
training data, datasets, layouts) goes through :func:`image_files` and :func:`read_rgb` /
:func:`read_index_mask` / :func:`read_label_image`, and every reader of pixels (those and the
slide layer's virtual slides and regions) through :func:`to_rgb8`, so a file format or mode is
handled the same everywhere: RGBA and LA are composited onto white (glass), 16-bit and 32-bit
values are scaled to 8 bits (``round(v * 255 / 65535)``), float images in [0, 1] or [0, 255]
are scaled, palette and CMYK images are converted by Pillow, and greyscale images, which are
not H&E, are read as grey RGB with a :class:`GreyscaleWarning`. Every identifier written to
an output for a slide or source image goes through :func:`opaque_id`: a hash, never a file
stem or path (a TCGA-style file name is a patient barcode).

Pillow, tifffile and OpenCV are imported inside the functions (``htd_core`` stays light).
"""

from __future__ import annotations

import fnmatch
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.decoding import CHANNELS, decode_image, image_size, opened
from htd_core.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES", "GreyscaleWarning", "decode_image", "image_files", "image_size",
    "opaque_id", "read_index_mask", "read_label_image", "read_rgb", "to_rgb8",
]  # fmt: skip

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


class GreyscaleWarning(UserWarning):
    """A greyscale image was read where H&E colour is expected (it is used as grey RGB)."""


_GREY_REPORTED: set[str] = set()


def to_rgb8(array: Any, source: str | Path = "image", *, channels: str | None = None) -> np.ndarray:
    """Pixels of any depth and layout as uint8 H x W x 3 RGB (the one pixel conversion).

    Args:
        array: H x W (grey) or H x W x C pixels; C = 1 (grey), 2 (grey + alpha), 3 (RGB) or
            4 (RGBA). dtype uint8, bool, uint16 / wider integers (16-bit when every value fits
            in 16 bits, else 32-bit), or float in [0, 1] (or [0, 255]).
        source: names the pixels in errors and warnings (a file path, a slide).
        channels: ``L``, ``LA``, ``RGB`` or ``RGBA`` (default: from the number of channels).

    Returns:
        uint8 H x W x 3; alpha is composited onto white (255, glass):
        ``out = round(255 * (c * a + 1 - a))`` with ``c`` and ``a`` scaled to [0, 1].
        Greyscale input warns :class:`GreyscaleWarning` (once per folder).

    Raises:
        InputError: negative, non-finite or out-of-range values, or an unknown layout.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    layout = channels or (CHANNELS.get(array.shape[2]) if array.ndim == 3 else None)
    if layout is None or array.ndim != 3 or len(layout) != array.shape[2]:
        raise InputError(f"{source}: pixels of shape {array.shape} are not an image (H x W x 1-4)")
    full = _full_scale(array, source)
    colour = array[..., : len(layout) - layout.endswith("A")]
    if layout in ("L", "LA"):
        _report_grey(source, layout)
    if not layout.endswith("A"):
        out = _scaled(colour, full)
    else:
        out = np.empty((*array.shape[:2], colour.shape[2]), np.uint8)
        for r in range(0, array.shape[0], 512):  # float rows in blocks: bounded memory
            c = colour[r : r + 512].astype(np.float32) / full
            a = array[r : r + 512, :, -1:].astype(np.float32) / full
            out[r : r + 512] = np.rint(255.0 * (c * a + 1.0 - a)).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def _full_scale(array: np.ndarray, source: str | Path) -> float:
    """The value that means full intensity for this array's dtype (and values)."""
    if array.dtype == np.uint8 or array.dtype == bool:
        return 255.0 if array.dtype == np.uint8 else 1.0
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(f"{source} holds NaN or infinite pixel values: not an image")
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{source} holds {array.dtype} pixels: not an image")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < 0:
        raise InputError(f"{source} holds negative pixel values ({low:g}): not an image")
    if np.issubdtype(array.dtype, np.floating):
        if high > 255.0:
            raise InputError(
                f"{source} holds float pixel values up to {high:g}: expected [0, 1] or [0, 255]"
            )
        return 1.0 if high <= 1.0 else 255.0
    if array.dtype.itemsize == 1:
        return 255.0
    return 65535.0 if array.dtype.itemsize == 2 or high <= 65535 else 4294967295.0


def _scaled(values: np.ndarray, full: float) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    return np.rint(values.astype(np.float64) * (255.0 / full)).astype(np.uint8)


def _report_grey(source: str | Path, mode: str) -> None:
    folder = str(Path(source).parent) if isinstance(source, Path) else str(source)
    if folder in _GREY_REPORTED:
        return
    _GREY_REPORTED.add(folder)
    warnings.warn(
        f"{source} is a greyscale image ({'grey' if mode == 'L' else 'grey + alpha'}): greyscale "
        "is not H&E; it is used as grey "
        f"RGB (further greyscale images in {folder} are not reported)",
        GreyscaleWarning,
        stacklevel=4,
    )


def read_rgb(path: str | Path, *, large: bool = False) -> np.ndarray:
    """An image file as uint8 H x W x 3 RGB through :func:`to_rgb8` (see the module doc).

    Args:
        large: allow images beyond Pillow's decompression-bomb limit (virtual slides).

    Raises:
        InputError: the file cannot be read as an image (names the file).
    """
    pixels, layout = decode_image(path, large=large)
    return to_rgb8(pixels, Path(path), channels=layout)


def read_label_image(path: str | Path, *, large: bool = False) -> np.ndarray:
    """A label image as an integer H x W array of codes, or uint8 H x W x 3 colours.

    Index images (modes 1, L, P: the palette index, I;16, I) give their stored codes; an
    RGB(A) image whose colour channels are equal (a grey mask saved as RGB, CAMELYON's JPEG
    masks) gives its one channel; any other RGB(A) image gives its colours (a mask painted in
    class colours), which must be opaque.

    Raises:
        InputError: unreadable, float values, or transparent pixels in a colour mask.
    """
    with opened(path, "mask", large) as im:
        mode = im.mode
        if mode not in ("1", "L", "P") and not mode.startswith("I"):
            im = im.convert("RGBA")
        mask = np.asarray(im)
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if mask.ndim == 2:
        return mask
    if (mask[..., 3] != 255).any():
        raise InputError(
            f"mask {path} has transparent pixels: a label mask holds one class per pixel "
            "(an index PNG, or opaque class colours)"
        )
    grey = mask[..., 0]
    if (mask[..., 1] == grey).all() and (mask[..., 2] == grey).all():
        return np.ascontiguousarray(grey)
    return np.ascontiguousarray(mask[..., :3])


def read_index_mask(path: str | Path) -> np.ndarray:
    """A label mask file as an integer H x W array of its stored values (class codes).

    A grey mask stored as RGB(A) with identical colour channels (CAMELYON's JPEG masks) is
    read as its one channel; any other multi-channel image is refused.

    Raises:
        InputError: the file cannot be read, or it is not single-channel.
    """
    mask = read_label_image(path)
    if mask.ndim != 2:
        raise InputError(
            f"mask {path} has colour pixels: a label mask holds one class code per pixel "
            "(an index PNG)"
        )
    return mask
