"""Leakage guard: synthetic samples generated from held-out images must not be scored as
synthetic training data, nor compared with the held-out set as if they were new.

A generated sample records the opaque source ids of its layout (``layout_source_id``) and of
its crops (``crop_source_ids``; :meth:`htd_core.Pipeline.iter_generate`). Sets written by an
older htd carry only ``slide_id`` and ``crop_provenance``; those are read instead. Both sides
go through one rule (:func:`htd_core.splits.opaque_source`), so a file name and the opaque id
of the same source image compare equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from htd_core.errors import InputError
from htd_core.splits import CROP_SOURCES, crop_sources, layout_source
from htd_core.types import CROP_PROVENANCE


def _json(value: Any) -> Any:
    """A manifest cell holding JSON (lists, provenance) as its value; other values as is."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def row_sources(meta: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(layout source, crop sources) of one synthetic sample's meta or manifest row."""
    crops = _json(meta.get(CROP_SOURCES))
    if not isinstance(crops, list):
        prov = _json(meta.get(CROP_PROVENANCE))
        crops = crop_sources(prov if isinstance(prov, Mapping) else None)
    return layout_source(meta), [str(c) for c in crops if c]


def held_out_sources(metas: Iterable[Mapping[str, Any]]) -> set[str]:
    """Opaque source ids of held-out samples (their metas or manifest rows)."""
    return {s for s in (layout_source(m) for m in metas) if s}


@dataclass
class Overlap:
    """Where a synthetic set meets the held-out set."""

    sources: list[str] = field(default_factory=list)  # shared opaque source ids, sorted
    layout_rows: int = 0  # rows generated from a held-out layout
    crop_rows: int = 0  # rows whose crops come from held-out images
    rows: int = 0  # rows with either

    def __bool__(self) -> bool:
        return bool(self.sources)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def describe(self, name: str, total: int) -> str:
        shown = ", ".join(self.sources[:8]) + (" ..." if len(self.sources) > 8 else "")
        which = f"synthetic set {name!r}" if name else "the synthetic set"
        return (
            f"{which} shares {len(self.sources)} source image(s) with the "
            f"held-out set ({shown}): {self.layout_rows} of {total} samples were generated from "
            f"held-out layouts and {self.crop_rows} use crops cut from held-out images"
        )


def find_overlap(metas: Iterable[Mapping[str, Any]], held_out: set[str]) -> Overlap:
    """Which synthetic samples (metas or manifest rows) use held-out sources."""
    out, shared = Overlap(), set()
    for meta in metas:
        layout, crops = row_sources(meta)
        hit_layout = layout in held_out
        hit_crops = held_out.intersection(crops)
        shared |= hit_crops | ({layout} if hit_layout else set())
        out.layout_rows += hit_layout
        out.crop_rows += bool(hit_crops)
        out.rows += hit_layout or bool(hit_crops)
    out.sources = sorted(shared)
    return out


def refuse_overlap(name: str, overlap: Overlap, total: int, what: str) -> None:
    """Raise an InputError naming the shared sources (``what``: what was about to happen)."""
    raise InputError(
        f"{overlap.describe(name, total)}; {what} would leak test data into the result. "
        "Generate from training layouts only (htd generate --dataset TRAIN, a crop bank built "
        "from TRAIN), or pass --allow-overlap (deeplabv3plus: allow_overlap=true) to evaluate "
        "anyway with the overlap recorded in the report"
    )
