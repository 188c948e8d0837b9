"""The crops of a dual condition as one picture (figures: map | crops | generated | real)."""

from __future__ import annotations

from typing import Any

import numpy as np


def crop_view(condition: Any, num_classes: int, empty: int = 40) -> np.ndarray:
    """The crops a crop builder placed, as one H x W x 3 uint8 RGB image.

    Args:
        condition: a :class:`htd_core.Condition` holding the crop builder's channels
            (``crop:<class>:r/g/b`` in [-1, 1] and ``valid:<class>``, K classes).
        num_classes: K, the class count of the condition's class list.
        empty: grey level (0-255) where no crop is placed.
    """
    size = tuple(condition.spatial.shape[1:])
    rgb = condition.select("crop:").numpy().reshape(num_classes, 3, *size)
    valid = condition.select("valid:").numpy()
    out = np.full((*size, 3), empty, np.float32)
    for k in range(num_classes):
        where = valid[k] > 0
        out[where] = ((rgb[k].transpose(1, 2, 0)[where] + 1) * 127.5).clip(0, 255)
    return out.round().astype(np.uint8)
