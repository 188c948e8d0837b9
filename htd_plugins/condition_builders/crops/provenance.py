"""The crop chosen for a class and where it came from: what the ``crop`` and ``embedding``
builders put into ``Condition.meta`` (``crop_provenance``), and from there the manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from htd_core import ClassMap


@dataclass(frozen=True)
class CropChoice:
    """The crop of one class: pixels as placed, top-left corner in the sample, provenance."""

    image: np.ndarray
    y: int
    x: int
    provenance: dict[str, Any]

    @property
    def placed(self) -> bool:
        """Whether the class got pixels (an empty choice carries only why in its provenance)."""
        return self.image.size > 0

    @classmethod
    def empty(cls, why: str) -> CropChoice:
        """No crop for a present class, and why (``{"empty": why}`` in the provenance)."""
        return cls(np.zeros((0, 0, 3), np.uint8), 0, 0, {"empty": why})


def crop_provenance(
    class_map: ClassMap, choices: Mapping[int, CropChoice | None]
) -> dict[str, dict[str, Any] | None]:
    """Per class name, where its crop came from: ``source`` (sample | bank | explicit),
    ``slide_id`` (opaque), ``x``, ``y``, ``size`` (where it was cut, px), ``placed_x``,
    ``placed_y``, ``placed_size`` (where it sits in the condition); ``None`` for an absent
    class, ``{"empty": "region too small"}`` for a present class whose region holds no square
    of at least ``min_size``."""
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(class_map.names)
    for i, c in choices.items():
        out[class_map.names[i]] = c.provenance if c is not None else {"empty": "region too small"}
    return out
