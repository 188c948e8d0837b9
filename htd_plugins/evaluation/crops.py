"""The real conditioning crops of a synthetic sample, for the report's example grid.

``htd generate`` records, per synthetic row, the layout it came from (``layout``:
``<folder>#<row>``, the folder relative to the synthetic dataset) and each class's crop
(``crop_provenance``: source, where it was cut ``x, y, size`` and where it was placed
``placed_x, placed_y, placed_size``). For crops cut from the layout's own image
(``source: sample``) the real pixels are read back from that image and pasted where the model
saw them; crops from a crop bank or given explicitly are not re-read, and the cell says so
instead of showing synthetic pixels.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Canvas grey of a crops view (pixels where no crop was placed).
CANVAS = 40


def provenance(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``crop_provenance`` mapping of a sample (parsed when it is manifest JSON text)."""
    prov = meta.get("crop_provenance")
    if isinstance(prov, str):
        try:
            prov = json.loads(prov)
        except json.JSONDecodeError:
            return None
    return dict(prov) if isinstance(prov, Mapping) else None


def layout_image(meta: Mapping[str, Any], root: str | Path | None) -> np.ndarray | None:
    """The real image of the layout a synthetic sample was generated from, when ``layout``
    names a row of an htd dataset that still exists beside the synthetic set (else None)."""
    from htd_core.dataset import Dataset
    from htd_core.errors import InputError

    layout = str(meta.get("layout") or "")
    folder, sep, index = layout.rpartition("#")
    if not sep or not index.isdigit() or root is None:
        return None
    path = Path(root) / folder
    if not (path / "manifest.csv").is_file():
        return None
    try:
        data = Dataset(path)
        return data[int(index)].image if int(index) < len(data) else None
    except (InputError, OSError):
        return None


def real_crops_view(
    meta: Mapping[str, Any], shape: tuple[int, int], root: str | Path | None
) -> tuple[np.ndarray | None, str | None]:
    """(view, note): the real crops on a grey canvas of ``shape`` at their placed positions,
    or None and why the pixels are not available (None, None: no crop was used)."""
    prov = provenance(meta)
    crops = {k: v for k, v in (prov or {}).items() if isinstance(v, Mapping) and "placed_x" in v}
    if not crops:
        return None, None
    sources = {str(v.get("source")) for v in crops.values()}
    if sources != {"sample"}:
        other = ", ".join(sorted(sources - {"sample"}))
        return None, f"real crops not shown: they came from {other} (pixels not kept here)"
    image = layout_image(meta, root)
    if image is None:
        return None, f"real crops not shown: layout {meta.get('layout')!r} not found"
    view = np.full((*shape, 3), CANVAS, np.uint8)
    for c in crops.values():
        x, y, d = int(c["x"]), int(c["y"]), int(c["size"])
        px, py, pd = int(c["placed_x"]), int(c["placed_y"]), int(c.get("placed_size", d))
        pixels = image[y : y + d, x : x + d][:pd, :pd]
        h, w = pixels.shape[:2]
        view[py : py + h, px : px + w] = pixels[: shape[0] - py, : shape[1] - px]
    return view, None


def note_tile(text: str, side: int = 128) -> np.ndarray:
    """A grey square carrying ``text`` (a cell that says why it shows no picture)."""
    from PIL import Image, ImageDraw, ImageFont

    tile = Image.new("RGB", (side, side), (225, 225, 225))
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default(size=11)
    draw.multiline_text((6, 6), textwrap.fill(text, 20), fill=(40, 40, 40), font=font, spacing=2)
    return np.asarray(tile)
