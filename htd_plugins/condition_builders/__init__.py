"""Condition builders: ``semantic_map``, ``unconditional``, ``crop`` and ``embedding``.

Public names (for scripts and plugins; everything in submodules is internal):

- :class:`CropBank`: real tissue crops per class, to generate from layouts without images.

Builders themselves are created by registered name:
``htd_core.create("condition_builders", "crop", bank=...)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CropBank"]


def __getattr__(name: str) -> Any:  # lazy: importing a builder plugin stays cheap
    if name == "CropBank":
        from htd_plugins.condition_builders.crops.bank import CropBank

        return CropBank
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
