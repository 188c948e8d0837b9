"""Slide-scale synthesis: a seamless synthetic whole-slide region from a large layout, written
as a pyramidal TIFF with its label mask and annotations (docs/slide-synthesis.md).

Public names (for scripts; the modules are internal):

- :func:`read_layout` -> :class:`SlideLayout`: a label mask, QuPath GeoJSON / ASAP XML
  (rasterised at a size and mpp), a discovery pseudo map, or a real slide's annotations;
- :func:`generate_slide`: denoise the layout's latent canvas in overlapping windows blended
  at every step, decode in blended tiles, write the slide and its sidecars;
- :func:`output_paths`: the files ``generate_slide`` writes for a slide path;
- :func:`seam_report`: seam measurements of a generated slide (gradient ratio; Frechet
  distance of patches straddling window edges vs patches centred between them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SlideLayout", "generate_slide", "output_paths", "read_layout", "seam_report"]


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap
    if name == "SlideLayout":
        from htd_plugins.slide_synthesis.layout import SlideLayout

        return SlideLayout
    if name == "read_layout":
        from htd_plugins.slide_synthesis.readers import read_layout

        return read_layout
    if name in ("generate_slide", "output_paths"):
        from htd_plugins.slide_synthesis import api

        return getattr(api, name)
    if name == "seam_report":
        from htd_plugins.slide_synthesis.seams import seam_report

        return seam_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
