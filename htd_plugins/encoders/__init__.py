"""Encoders: ``timm_encoders`` (UNI, UNI2-h, DINOv2, ResNet-50, ViT-S) and ``inception_fid``.

Public names, for plugins that add foundation-model encoders (see ``plugins/htd-timm-encoder``
and docs/encoders.md); submodules are internal:

- :class:`TimmEncoder`: any timm architecture as an ``htd_core.Encoder``, weights from a file;
- :class:`TimmSpec`: which timm model to build, its preprocessing and ``default_weights``;
- :func:`make_encoder_class`: a registrable ``TimmEncoder`` subclass for a spec;
- ``IMAGENET_MEAN`` / ``IMAGENET_STD``: the usual normalisation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TimmEncoder", "TimmSpec", "make_encoder_class"]


def __getattr__(name: str) -> Any:  # lazy: importing one encoder plugin stays cheap
    if name in __all__:
        from htd_plugins.encoders.bases import timm

        return getattr(timm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
