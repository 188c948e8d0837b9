"""File decoding behind :mod:`htd_core.images`: every format and mode at full depth.

Pillow decodes every format and mode; 16-bit RGB(A), which Pillow truncates to its high byte,
is decoded at full depth by tifffile (TIFF) or OpenCV (PNG), and TIFFs Pillow cannot open
(float RGB) by tifffile. The pixels then go through :func:`htd_core.images.to_rgb8`, the one
conversion to 8-bit RGB. Pillow, tifffile and OpenCV are imported inside the functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError

#: Pixel layout by number of channels (the ``channels`` of :func:`htd_core.images.to_rgb8`).
CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@contextlib.contextmanager
def opened(path: str | Path, what: str, large: bool) -> Iterator[Any]:
    """Pillow image of ``path`` (``what``: "image" or "mask", for the error); errors become one
    InputError naming the file. ``large`` lifts Pillow's decompression-bomb limit."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        if large:  # whole-slide masks and virtual slides are large by nature
            Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as im:
            yield im
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def decode_image(path: str | Path, *, large: bool = False) -> tuple[np.ndarray, str]:
    """A file's pixels at full depth and their layout (``L``, ``LA``, ``RGB``, ``RGBA``).

    Pillow decodes every format and mode; 16-bit RGB(A), which Pillow truncates to its high
    byte, is decoded at full depth by tifffile (TIFF) or OpenCV (PNG); TIFFs Pillow cannot
    open (float RGB) by tifffile. Palette images become RGB(A), CMYK becomes RGB (Pillow).

    Raises:
        InputError: the file cannot be read as an image (names the file).
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and _pillow_cannot(path):
        return _tifffile_pixels(path)
    with opened(path, "image", large) as im:
        mode, tile = im.mode, im.tile[0][3] if im.tile else ""
        rawmode = str(tile[0] if isinstance(tile, tuple) else tile)
        if mode in ("RGB", "RGBA") and "16" in rawmode:
            return _sixteen_bit(path, mode)
        if mode in ("1", "L"):
            return np.asarray(im.convert("L")), "L"
        if mode in ("LA", "La"):
            return np.asarray(im.convert("LA")), "LA"
        if mode.startswith("I") or mode == "F":
            return np.asarray(im), "L"
        if mode in ("P", "PA", "RGBA", "RGBa"):
            rgba = np.asarray(im.convert("RGBA"))
            if mode in ("P", "PA") and (rgba[..., :3] == rgba[..., :1]).all():
                return rgba[..., [0, 3]], "LA"  # a grey palette
            return rgba, "RGBA"
        return np.asarray(im.convert("RGB")), "RGB"


def _pillow_cannot(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return False
    except (UnidentifiedImageError, OSError):
        return path.is_file()


def _sixteen_bit(path: Path, mode: str) -> tuple[np.ndarray, str]:
    if path.suffix.lower() in (".tif", ".tiff"):
        return _tifffile_pixels(path)
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim != 3:
        raise InputError(f"cannot read 16-bit image {path}")
    return np.ascontiguousarray(pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]), mode


def _tifffile_pixels(path: Path) -> tuple[np.ndarray, str]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            pixels, photometric = page.asarray(), page.photometric
    except Exception as exc:  # noqa: BLE001 - any decoder failure: an unreadable file
        raise InputError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    if pixels.ndim == 3 and pixels.shape[0] in (1, 2, 3, 4) and pixels.shape[2] > 4:
        pixels = np.moveaxis(pixels, 0, -1)  # planar (C x H x W)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if photometric == tifffile.PHOTOMETRIC.SEPARATED and channels >= 4:  # CMYK
        full = float(np.iinfo(pixels.dtype).max) if pixels.dtype.kind in "ui" else 1.0
        cmy, k = pixels[..., :3] / full, pixels[..., 3:4] / full
        return np.rint(255.0 * (1 - cmy) * (1 - k)).astype(np.uint8), "RGB"
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:  # 0 is white: invert
        top = np.iinfo(pixels.dtype).max if pixels.dtype.kind in "ui" else 1.0
        pixels = ~pixels if pixels.dtype == bool else top - pixels
    layout = CHANNELS.get(channels)
    if layout is None or photometric not in (
        tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE, tifffile.PHOTOMETRIC.RGB,
    ):  # fmt: skip
        raise InputError(
            f"cannot read image {path}: TIFF photometric {photometric.name} with {channels} channels"
        )
    return pixels, layout


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file (``what``: "image" or "mask", for the error) from its
    header (no pixel is decoded).

    Raises:
        InputError: the file cannot be read as an image (names the file).
    """
    with opened(path, what, large=True) as im:
        return im.size
