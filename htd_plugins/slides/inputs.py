"""Slides and their annotation sources, from the slide samplers' options.

``slide`` is a path, a list of paths, or a ``.csv`` table with columns ``slide`` and optionally
``annotations`` (``;``-separated), ``label_mask`` and ``slide_mpp`` (relative paths from the
table's folder). ``annotations``, ``label_mask`` and ``slide_mpp`` are one value for one slide
(``annotations`` may be a list of files for it), or a list aligned with the slides.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from htd_core.errors import InputError


@dataclass(frozen=True)
class SlideInput:
    """One slide and its annotation sources."""

    path: Path
    annotations: tuple[Path, ...] = ()
    label_mask: Path | None = None
    slide_mpp: float | None = None


def slide_inputs(slide: Any, annotations: Any, label_mask: Any, slide_mpp: Any) -> list[SlideInput]:
    """One :class:`SlideInput` per slide from the samplers' options (see the module doc)."""
    if isinstance(slide, str | Path) and str(slide).lower().endswith(".csv"):
        return _read_slide_table(Path(slide))
    paths = [slide] if isinstance(slide, str | Path) else list(slide)
    if not paths:
        raise InputError("slide is empty: give a slide path, a list of paths or a .csv table")
    n = len(paths)
    ann = _per_slide("annotations", annotations, n, nested=True)
    masks = _per_slide("label_mask", label_mask, n)
    mpps = _per_slide("slide_mpp", slide_mpp, n)
    return [
        SlideInput(Path(p), tuple(Path(a) for a in _as_list(ann[i])), _opt_path(masks[i]), mpps[i])
        for i, p in enumerate(paths)
    ]


def check_files_exist(inputs: Sequence[SlideInput]) -> None:
    """Fail before any work (and before an output folder exists) on a missing input file."""
    for item in inputs:
        if not item.path.exists():
            raise InputError(f"slide {item.path} does not exist: check the path")
        for path, what in [(a, "annotation file") for a in item.annotations] + [
            (item.label_mask, "label mask")
        ]:
            if path is not None and not path.is_file():
                raise InputError(f"{what} {path} (for slide {item.path.name}) does not exist")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str | Path) else list(value)


def _opt_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _per_slide(name: str, value: Any, n: int, nested: bool = False) -> list[Any]:
    """One value per slide from a scalar (one slide, or shared) or an aligned list."""
    if value is None or isinstance(value, str | Path | int | float):
        if n > 1 and isinstance(value, str | Path):
            raise InputError(
                f"{name} is one file for {n} slides: give a list aligned with the slides"
            )
        return [value] * n
    items = list(value)
    if n == 1 and nested:
        return [items]  # several annotation files for the one slide
    if len(items) != n:
        raise InputError(
            f"{name} has {len(items)} entries for {n} slides: give one per slide (None for none)"
        )
    return items


def _read_slide_table(path: Path) -> list[SlideInput]:
    if not path.is_file():
        raise InputError(f"slide table {path} does not exist")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "slide" not in rows[0]:
        raise InputError(
            f"slide table {path} needs a 'slide' column (and optionally annotations, label_mask, slide_mpp)"
        )
    base = path.parent

    def rel(p: str) -> Path:
        return Path(p) if Path(p).is_absolute() else base / p

    out = []
    for i, row in enumerate(rows, 2):
        ann = tuple(rel(a.strip()) for a in (row.get("annotations") or "").split(";") if a.strip())
        mask = row.get("label_mask") or ""
        try:
            mpp = float(row["slide_mpp"]) if row.get("slide_mpp") else None
        except ValueError:
            raise InputError(
                f"{path} line {i}: slide_mpp={row['slide_mpp']!r} is not a number"
            ) from None
        out.append(SlideInput(rel(row["slide"]), ann, rel(mask) if mask else None, mpp))
    return out
