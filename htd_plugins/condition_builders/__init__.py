"""Condition builders: ``semantic_map``, ``unconditional``, ``crop``, ``crop_slots`` and
``embedding``.

Public names (for scripts, plugins and applications; everything in submodules is internal):

- :class:`CropBank`: real tissue crops per class, to generate from layouts without images and
  to draw crops from outside a training sample's window (``placement="outside"``);
- :func:`crop_overlaps_window`: whether a placed crop (its provenance) holds pixels of the
  target sample's own window (the copy shortcut the ``outside`` placement rules out);
- :func:`window_of`: where a sample lies in its source image (from its meta), or None;
- :func:`placed_crop`: the pixels a crop builder placed, read back from its provenance;
- :class:`MissingCropError`: a crop builder has no crop to give (no bank for a layout without
  an image); a command line catches it to name its own flags;
- :func:`crop_view`: the crops of a built condition as one RGB picture (figures).

Builders themselves are created by registered name:
``htd_core.create("condition_builders", "crop", bank=...)``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CropBank",
    "MissingCropError",
    "crop_overlaps_window",
    "crop_view",
    "placed_crop",
    "window_of",
]


def __getattr__(name: str) -> Any:  # lazy: importing a builder plugin stays cheap
    if name == "CropBank":
        from htd_plugins.condition_builders.crops.bank import CropBank

        return CropBank
    if name == "MissingCropError":
        from htd_plugins.condition_builders.crops.explicit import MissingCropError

        return MissingCropError
    if name in ("crop_overlaps_window", "placed_crop", "window_of"):
        from htd_plugins.condition_builders.crops import references

        return getattr(references, name)
    if name == "crop_view":
        from htd_plugins.condition_builders.crops.view import crop_view

        return crop_view
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
