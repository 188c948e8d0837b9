"""Reading layouts (see :mod:`htd_plugins.slide_synthesis.layout` for the sources)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap
from htd_plugins.slide_synthesis.layout import (
    ANNOTATION_SUFFIXES,
    IGNORE,
    MASK_SUFFIXES,
    UNSET,
    SlideLayout,
    check_mpp,
    class_index,
    fill_value,
    unknown_class_error,
)
from htd_plugins.slide_synthesis.rasterise import rasterise_canvas, rasterise_slide


def read_layout(
    source: str | Path,
    class_map: ClassMap,
    *,
    mpp: float | None = None,
    size: Sequence[int] | None = None,
    fill: str | None = None,
    label_map: Mapping[str, str] | None = None,
    label_classes: Any = None,
    slide: str | Path | None = None,
    slide_mpp: float | None = None,
    region: Sequence[int] | None = None,
    crop: bool = False,
) -> SlideLayout:
    """Read a layout from a label mask or an annotation file (module doc).

    Args:
        source: label-mask image or annotation file.
        class_map: the model's classes (the layout's names must be among them).
        mpp: um/px of the layout: required for plain masks and canvas annotations; for a real
            slide's annotations, the resolution to rasterise at (required too).
        size: (width, height) px of an annotation canvas; default: the annotations' extent.
        fill: class of pixels no annotation or mask code covers (``@ignore`` for don't care);
            None refuses a layout with such pixels.
        label_map: label -> model class name (or ``@ignore``), applied first.
        label_classes: names of a mask's codes (list in code order, {code: name}, or a JSON
            file); default: the sidecar ``<mask>.json``, else codes index the model's classes.
        slide, slide_mpp: the real slide the annotations belong to (and its mpp when the file
            has none).
        region: (x, y, width, height) in the slide's level-0 px; default: the annotations' extent.
        crop: allow canvas annotations that extend beyond ``size`` and cut them; the
            layout's ``info["cut"]`` then says how much was cut.

    Raises:
        InputError: a missing or unreadable file, a class the model does not know (naming it
            and the model's classes), unannotated pixels without ``fill``, a missing mpp,
            canvas annotations beyond ``size`` without ``crop`` (naming both sizes).
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"layout {path} does not exist")
    suffix = path.suffix.lower()
    names = {
        **{n: n for n in class_map.names},
        **{str(k): str(v) for k, v in (label_map or {}).items()},
    }
    fill_code = fill_value(fill, class_map)
    if suffix in ANNOTATION_SUFFIXES:
        if slide is not None:
            mask, mpp, info = rasterise_slide(path, class_map, names, mpp, slide, slide_mpp, region)
        else:
            mask, mpp, info = rasterise_canvas(path, class_map, names, mpp, size, crop)
    elif suffix in MASK_SUFFIXES:
        mask, mpp, info = _read_mask(path, class_map, names, mpp, label_classes)
    else:
        raise InputError(
            f"layout {path}: unsupported type {suffix!r}; give a label mask "
            f"{list(MASK_SUFFIXES)} or annotations {list(ANNOTATION_SUFFIXES)}"
        )
    unset = mask == UNSET
    if unset.any():
        if fill_code is None:
            raise InputError(
                f"layout {path}: {unset.mean():.1%} of its pixels have no class (unannotated or "
                f"unlabelled code): pass fill=<class> (one of {list(class_map.names)}) or "
                f"fill='{IGNORE}'"
            )
        mask[unset] = fill_code
    return SlideLayout(mask, class_map, float(mpp), {**info, "fill": fill})


def _read_mask(
    path: Path, class_map: ClassMap, names: Mapping[str, str], mpp: float | None, label_classes: Any
) -> tuple[np.ndarray, float, dict[str, Any]]:
    import json

    from htd_plugins.slides import NO_LABEL, load_code_names, read_label_mask

    codes = read_label_mask(path)
    code_names, _ = load_code_names(label_classes, path)
    sidecar = path.with_suffix(".json")
    side = json.loads(sidecar.read_text()) if sidecar.is_file() and label_classes is None else {}
    kind = "pseudo map" if isinstance(side, dict) and "map_mpp" in side else "label mask"
    if mpp is None and isinstance(side, dict) and side.get("map_mpp"):
        mpp = float(side["map_mpp"])
    if mpp is None:
        mpp = _tiff_mpp(path)
    if mpp is None:
        raise InputError(
            f"layout {path} does not say its resolution: pass mpp=<um/px> (--mpp) for the mask"
        )
    mpp = check_mpp(mpp, "mpp")
    present = [int(c) for c in np.unique(codes)]
    lut = np.full(max(present) + 1, UNSET, np.uint8)
    unknown = []
    for code in present:
        if code == NO_LABEL:
            continue
        if code_names is None:
            if code == class_map.ignore_index:
                lut[code] = code
            elif 0 <= code < len(class_map):
                lut[code] = code
            else:
                unknown.append(f"code {code}")
            continue
        name = code_names.get(code)
        index = None if name is None else class_index(name, names, class_map)
        if index is None:
            unknown.append(name if name is not None else f"code {code} (unnamed)")
        else:
            lut[code] = index
    if unknown:
        raise unknown_class_error(path, unknown, class_map)
    return lut[codes], mpp, {"kind": kind, "source_size": list(codes.shape[::-1])}


def _tiff_mpp(path: Path) -> float | None:
    """um/px from a TIFF's resolution tags (centimetre or inch units), else None."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        if "XResolution" not in tags or "ResolutionUnit" not in tags:
            return None
        num, den = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
    per_unit = num / den if den else 0
    microns = {2: 25400.0, 3: 10000.0}.get(unit)
    return microns / per_unit if microns and per_unit > 0 else None
