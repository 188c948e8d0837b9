"""The crop builder inside another builder (``crop_slots``, ``embedding``): crops chosen and
placed exactly as the ``crop`` builder does, from that builder's ``crop_options``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.errors import InputError
from htd_plugins.condition_builders.crop import CropBuilder


def inner_cropper(
    owner: str,
    crop_options: Mapping[str, Any] | None,
    bank: Any = None,
    classes: Any = None,
    seed: int = 0,
) -> CropBuilder:
    """A :class:`~htd_plugins.condition_builders.crop.CropBuilder` for builder ``owner``.

    Args:
        owner: the builder's registered name (named in errors).
        crop_options: the crop builder's options (``placement``, ``d_base``, ...).
        bank: a ``CropBank`` or the path of a saved one; given over ``crop_options["bank"]``.
        classes, seed: the owner's own, passed on.

    Raises:
        InputError: ``classes`` or ``seed`` inside ``crop_options`` (they belong to the
            owner), or an invalid crop option (named by the crop builder).
    """
    options = dict(crop_options or {})
    for key in ("classes", "seed"):
        if key in options:
            raise InputError(f"{owner}: give {key}= to the builder, not in crop_options")
    if bank is not None:
        options["bank"] = bank
    return CropBuilder(**options, classes=classes, seed=seed)
