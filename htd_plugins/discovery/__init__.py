"""Self-supervised tissue discovery: pseudo semantic maps for unannotated slides.

Stages (each a module): ``embed`` (tissue grid + float16 embeddings per slide, the patches
read by ``patches``), ``diversity`` (k-center sample per slide), ``kmeans`` + ``clustering``
(phenotypes and their merge tree, :class:`htd_plugins.slides.PhenotypeTree`), ``maps`` (pseudo
maps per granularity), ``classifier`` + ``distill`` (ViT-small student); ``cli`` runs them for
``htd discover``. The coarse-to-fine ``curriculum`` sampler reads the merge tree written with
the maps (``htd_plugins.samplers.curriculum``). See docs/discovery.md.
"""

from __future__ import annotations

from typing import Any

#: Public names (scripts and figures); the stages themselves are run with ``htd discover``.
__all__ = ["level_class_map", "pseudo_maps_for_image", "read_map", "tiatoolbox_sample_image"]
_HOME = {
    "level_class_map": "maps",
    "read_map": "maps",
    "pseudo_maps_for_image": "quick",
    "tiatoolbox_sample_image": "quick",
}


def __getattr__(name: str) -> Any:  # lazy: importing a stage loads no other stage
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
