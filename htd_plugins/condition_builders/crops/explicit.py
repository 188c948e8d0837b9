"""Explicit crops: the real tissue a user gives per class (image files or uint8 arrays), so a
layout can be generated without a crop bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from htd_core.errors import InputError
from htd_core.images import read_rgb
from htd_plugins.condition_builders.crops.regions import center_square


def load_crop(name: object, value: np.ndarray | str | Path) -> np.ndarray:
    """The explicit crop of class ``name`` as a centred uint8 S x S x 3 square.

    A file is read through :func:`htd_core.images.read_rgb` (the one pixel conversion: alpha
    on white, 16-bit scaled, grey flagged); an array must already be uint8 H x W x 3.

    Raises:
        InputError: the file does not exist or is not an image, or the array is not uint8
            H x W x 3.
    """
    if isinstance(value, str | Path):
        if not Path(value).is_file():
            raise InputError(f"crop: explicit crop for {name!r}: file {value} does not exist")
        value = read_rgb(value)
    image = np.asarray(value)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"crop: explicit crop for {name!r} must be uint8 H x W x 3, got {image.dtype} "
            f"{image.shape}"
        )
    return np.ascontiguousarray(center_square(image, min(image.shape[:2])))


class MissingCropError(InputError):
    """A crop builder has no crop to give: a layout without an image and neither a bank crop
    nor an explicit crop of ``class_name``, a bank without crops of it (``bank_has``: what
    it has), or ``placement="outside"`` without a bank (``class_name`` None). The message
    speaks Python (``bank=``, ``crops=``); a command line catches this error and names its
    own flags instead (``--crop-bank``)."""

    def __init__(
        self, message: str, class_name: str | None = None, bank_has: str | None = None
    ) -> None:
        super().__init__(message)
        self.class_name, self.bank_has = class_name, bank_has
