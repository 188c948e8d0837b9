"""Self-supervised tissue discovery: pseudo semantic maps for unannotated slides.

Stages (each a module): ``embed`` (tissue grid + float16 embeddings per slide), ``diversity``
(k-center sample per slide), ``kmeans`` + ``tree`` + ``clustering`` (phenotypes and their
merge tree), ``maps`` (pseudo maps per granularity), ``classifier`` + ``distill`` (ViT-small
student). The coarse-to-fine ``curriculum`` sampler that uses them is
``htd_plugins.samplers.curriculum``. See docs/discovery.md.
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


def __getattr__(name: str) -> Any:  # lazy: the curriculum sampler imports only the tree
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
