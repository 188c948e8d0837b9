"""The preview a person opens first: the synthetic slide downscaled beside its layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from htd_core.types import ClassMap

#: Longest side in px of each panel of the preview.
SIDE = 768


def write_preview(
    slide: str | Path, layout: np.ndarray, class_map: ClassMap, mpp: float, path: str | Path
) -> Path:
    """Write ``path`` (PNG): the pyramid level of ``slide`` nearest :data:`SIDE` px (read
    back from the TIFF just written, so the preview shows the file) beside the layout (uint8
    H x W class indices, 255 ignored) in class colours, under a legend of the classes.

    Returns:
        ``path``.
    """
    import tifffile

    from htd_plugins.pictures import panel_sheet

    with tifffile.TiffFile(str(slide)) as tif:
        pages = list(tif.pages)
        fitting = [p for p in pages if max(p.shape[:2]) <= SIDE]
        image = (fitting[0] if fitting else pages[-1]).asarray()
    h, w = layout.shape
    step = max(1, max(h, w) // SIDE)
    labels = np.asarray(layout[::step, ::step])
    title = f"{w} x {h} px at {mpp:g} um/px (slide level {image.shape[1]} x {image.shape[0]})"
    rows = [[("synthetic slide", image), ("layout", class_map.colorize(labels))]]
    return panel_sheet(rows, class_map, path, side=SIDE, title=title)
