"""The contact sheet of ``htd generate``: what went in and what came out, one row per sample.

Each row is ``map | crops | image``: the semantic map (the layout, in class colours), the real
crop of each class as it was cut (from the layout's own image, or from the crop bank, read
back from the sample's recorded provenance), and the synthetic image with the map's outlines.
Rows are spread evenly over the dataset; the sheet is rewritten whole at the end of each run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The sheet's file name beside the data (as ``htd sample``'s).
CONTACT_SHEET = "contact_sheet.png"


def generation_sheet(
    dataset: str | Path,
    layouts: Sequence[Any],
    path: str | Path,
    *,
    bank: str | Path | None = None,
    n: int = 8,
    side: int = 128,
) -> Path:
    """Write the contact sheet of a generated dataset (module doc); returns ``path``.

    Args:
        dataset: the ``htd generate`` output folder.
        layouts: the layouts it was generated from, in order (``TissueSample``; their images,
            when they have one, are where crops of ``source: sample`` were cut).
        bank: the crop bank file crops of ``source: bank`` came from (None: those crops are
            left out of the sheet).
        n: rows at most; ``side``: panel side in px.
    """
    from htd_core.dataset import Dataset
    from htd_plugins.condition_builders import CropBank
    from htd_plugins.pictures import outlined, panel_sheet

    data = Dataset(dataset)
    cm = data.class_map
    crops_from = CropBank.load(bank) if bank else None
    picks = sorted({int(round(v)) for v in np.linspace(0, len(data) - 1, min(n, len(data)))})
    rows = []
    for i in picks:
        sample = data[i]
        layout = layouts[i] if i < len(layouts) else None
        row = [(f"map #{i}", cm.colorize(sample.mask))]
        for name, prov in _provenance(sample.meta).items():
            pixels = _crop_pixels(prov, name, crops_from, getattr(layout, "image", None))
            if pixels is not None:
                row.append((f"crop: {name}", pixels))
        row.append(("synthetic", outlined(sample.image, sample.mask, cm, side)))
        rows.append(row)
    shown = f"{len(picks)} of {len(data)}" if len(picks) < len(data) else f"{len(data)}"
    title = f"{shown} synthetic samples: map | real crops | synthetic image"
    return panel_sheet(rows, cm, path, side=side, title=title)


def _provenance(meta: Mapping[str, Any]) -> dict[str, Any]:
    prov = meta.get("crop_provenance")
    if isinstance(prov, str) and prov:
        prov = json.loads(prov)
    return dict(prov) if isinstance(prov, Mapping) else {}


def _crop_pixels(prov: Any, name: str, bank: Any, image: np.ndarray | None) -> np.ndarray | None:
    """The crop as it was cut (before any resizing when placed), or None when it cannot be
    read back (an explicit crop, a bank not given, a layout without its image)."""
    if not isinstance(prov, Mapping):
        return None
    if prov.get("source") == "sample" and image is not None and "size" in prov:
        x, y, d = int(prov["x"]), int(prov["y"]), int(prov["size"])
        return np.asarray(image[y : y + d, x : x + d])
    if prov.get("source") == "bank" and bank is not None and "bank_index" in prov:
        items = bank.crops(name)
        index = int(prov["bank_index"])
        return np.asarray(items[index].image) if index < len(items) else None
    return None
