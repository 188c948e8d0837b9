"""Evaluators: ``frechet``, ``deeplabv3plus`` and ``privacy``; their libraries are in
``distance/``, ``segmentation/``, ``privacy_audit/`` and ``reporting/``.

Public names (submodules are internal):

- :func:`save_grid`: the example-grid figure of ``report.md`` (rows of named uint8 images).
"""

from __future__ import annotations

from typing import Any

__all__ = ["save_grid"]


def __getattr__(name: str) -> Any:  # lazy: importing an evaluator plugin stays cheap
    if name == "save_grid":
        from htd_plugins.evaluators.reporting.figures import save_grid

        return save_grid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
