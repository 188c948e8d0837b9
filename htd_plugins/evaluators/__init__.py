"""Evaluators: ``frechet``, ``deeplabv3plus`` and ``privacy``; their libraries are in
``distance/``, ``segmentation/``, ``privacy_audit/`` and ``figures.py``.

Public names (submodules are internal):

- :func:`save_grid`: the example-grid figure of ``report.md`` (rows of named uint8 images).
- :func:`crop_region`: the boolean H x W region of a synthetic sample's conditioning crops
  (from its recorded crop provenance), or None.
- :func:`statistics`, :func:`frechet_distance`: mean and covariance of N x D features, and the
  Frechet distance between two such (float64 maths).
- :func:`build_encoder`, :func:`encoder_spec_name`: an encoder from its spec (a registered
  name, ``{name: options}`` or an instance) and the name it is reported under.
- :func:`at_or_below_chance`: whether a mean IoU does not exceed the chance mean IoU.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "at_or_below_chance",
    "build_encoder",
    "crop_region",
    "encoder_spec_name",
    "frechet_distance",
    "save_grid",
    "statistics",
]


def __getattr__(name: str) -> Any:  # lazy: importing an evaluator plugin stays cheap
    if name == "save_grid":
        from htd_plugins.evaluators.figures import save_grid

        return save_grid
    if name == "crop_region":
        from htd_plugins.evaluators.privacy_audit.distances import crop_region

        return crop_region
    if name in ("frechet_distance", "statistics"):  # fd_math imports torch and scipy
        from htd_plugins.evaluators.distance import fd_math

        return getattr(fd_math, name)
    if name == "at_or_below_chance":
        from htd_plugins.evaluators.segmentation.section import at_or_below_chance

        return at_or_below_chance
    if name in ("build_encoder", "encoder_spec_name"):
        from htd_plugins.evaluators.distance import encoding

        return getattr(encoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
