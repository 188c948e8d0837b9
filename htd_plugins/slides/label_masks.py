"""Label-mask images (integer class codes per pixel) at any downsample of a slide.

Accepted: single-channel index images (modes 1, L, P: the palette index, I;16, I; a grey mask
saved as RGB counts as one), and the discovery stage's pseudo maps: one code per patch-grid
cell, 255 = no label, with a JSON sidecar ``<mask>.json`` naming the codes (``{"names":
[...]}`` or a list or ``{code: name}``; optional ``"downsample"``: level-0 pixels per mask
pixel, for grids anchored at the top-left that overhang the slide). A mask painted in colours
is refused unless ``label_colors`` maps its colours to classes (``{class: [r, g, b] |
"#rrggbb"}``) or says ``red`` (PANDA: the code is in the red channel): read by one channel,
a green stroma region would silently become another class. Lossy JPEG masks warn: their
compression moves class boundaries and invents codes between classes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap, class_names

NO_LABEL = 255  # code meaning "no label here": the cell keeps its tissue/background value


def read_label_mask(path: str | Path, colors: Any = None, unknown: str = "error") -> np.ndarray:
    """The mask's integer codes as a 2-D array.

    Args:
        colors: for a mask painted in colours: ``{class name: [r, g, b] or "#rrggbb"}`` (code
            i = the i-th colour, named by :func:`color_code_names`), or ``"red"`` (PANDA: the
            code is the red channel). None refuses colour masks.
        unknown: colours absent from ``colors``: ``error`` or ``ignore`` (an unnamed code).

    Raises:
        InputError: unreadable, float codes, or colours without (or outside) a colour table.
    """
    from htd_core.images import read_label_image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"label mask {path} does not exist")
    try:
        array = read_label_image(path, large=True)
    except InputError as exc:
        raise InputError(f"label mask {path} cannot be read as an image: {exc}") from None
    if path.suffix.lower() in (".jpg", ".jpeg"):
        warnings.warn(
            f"label mask {path} is a lossy JPEG: its compression moves class boundaries and "
            "creates codes between classes; export the mask as PNG or TIFF",
            stacklevel=2,
        )
    if array.ndim == 3:
        array = _colour_codes(array, colors, unknown, path)
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        raise InputError(
            f"label mask {path} holds {array.dtype} values; class codes must be integers"
        )
    return array.astype(np.int64)


def color_code_names(colors: Any) -> dict[int, str] | None:
    """Code -> class name of a ``label_colors`` table (None for ``"red"`` or None)."""
    if not isinstance(colors, Mapping):
        return None
    return {i: str(name) for i, name in enumerate(colors)}


def check_label_colors(colors: Any) -> None:
    """Raise unless ``colors`` is None, ``"red"`` or ``{name: [r, g, b] | "#rrggbb"}``."""
    if colors is None or colors == "red":
        return
    if not isinstance(colors, Mapping) or not colors:
        raise InputError(
            f"label_colors={colors!r}: give {{class: [r, g, b] or '#rrggbb'}}, or 'red' for "
            "codes in the red channel (PANDA)"
        )
    for name, value in colors.items():
        _rgb(value, name)


def _rgb(value: Any, name: Any) -> tuple[int, int, int]:
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    elif (
        isinstance(value, Sequence)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return int(value[0]), int(value[1]), int(value[2])
    raise InputError(f"label_colors[{name!r}]={value!r}: give [r, g, b] (0-255) or '#rrggbb'")


def _colour_codes(rgb: np.ndarray, colors: Any, unknown: str, path: Path) -> np.ndarray:
    """Codes of a colour mask from its colour table (or its red channel for ``"red"``)."""
    if colors == "red":
        return rgb[..., 0]
    packed = (
        (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    )
    found, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")

    def listing(rows: Sequence[int]) -> str:
        rgb_of = (
            (int(found[i]) >> 16, (int(found[i]) >> 8) & 255, int(found[i]) & 255) for i in rows
        )
        text = ", ".join(f"{c} x {counts[i]} px" for c, i in zip(rgb_of, rows[:6], strict=False))
        return text + (f" and {len(rows) - 6} more" if len(rows) > 6 else "")

    if not isinstance(colors, Mapping):
        raise InputError(
            f"label mask {path} is painted in colours ({listing(list(order))}): a label mask "
            "holds one class code per pixel (an index image: L, P or I mode). Give "
            "label_colors={class: [r, g, b]} to map its colours, or label_colors='red' if the "
            "red channel holds the code (PANDA)"
        )
    table = {}
    for i, (name, value) in enumerate(colors.items()):
        r, g, b = _rgb(value, name)
        table[(r << 16) | (g << 8) | b] = i
    codes = np.array([table.get(int(v), len(colors)) for v in found], np.int64)
    stray = [int(i) for i in order if codes[i] == len(colors)]
    if stray and unknown == "error":
        raise InputError(
            f"label mask {path} has colours {listing(stray)} that are not in label_colors "
            f"{dict(colors)}: add them, or set unknown_labels='ignore'"
        )
    return codes[inverse].reshape(rgb.shape[:2])


def load_code_names(
    label_classes: Any, mask_path: str | Path
) -> tuple[dict[int, str] | None, float | None]:
    """Codes -> names and optional downsample from ``label_classes`` or the JSON sidecar.

    ``label_classes`` is a list (code order), a mapping code -> name, a JSON file holding
    either (or ``{"names": [...], "downsample": d}``), or None (sidecar ``<mask>.json`` when
    present, else None: codes index the sampler's classes directly).
    """
    downsample = None
    spec = label_classes
    if spec is None:
        sidecar = Path(mask_path).with_suffix(".json")
        spec = sidecar if sidecar.is_file() else None
    source = "label_classes"
    if isinstance(spec, str | Path) and str(spec).lower().endswith(".json"):
        source = f"label classes file {spec}"
        try:
            spec = json.loads(Path(spec).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"label classes file {spec} cannot be read: {exc}") from exc
        if isinstance(spec, Mapping) and ("names" in spec or "classes" in spec):
            downsample = spec.get("downsample")
            spec = spec.get("names", spec.get("classes"))
    if spec is None:
        return None, downsample
    if isinstance(spec, Mapping):
        try:
            return {int(k): str(v) for k, v in spec.items()}, downsample
        except ValueError as exc:
            raise InputError(
                f"label_classes keys must be integer codes, got {list(spec)[:5]}"
            ) from exc
    if isinstance(spec, Sequence) and not isinstance(spec, str):  # one name per code, once
        named = [str(v) for v in spec if str(v) != "@ignore"]
        class_names(named, f"{source}: {list(spec)}")  # to merge codes, map them: {code: name}
        return {i: str(v) for i, v in enumerate(spec)}, downsample
    raise InputError(
        f"label_classes={label_classes!r}: give a list of names in code order, a mapping "
        "code -> name, or a JSON file with either"
    )


def code_lut(
    codes: np.ndarray, names: dict[int, str] | None, class_map: ClassMap, unknown: str, source: str
) -> np.ndarray:
    """Lookup table code -> class index (ignore index for ``@ignore``; NO_LABEL kept)."""
    present = [int(c) for c in np.unique(codes) if c != NO_LABEL]
    lut = np.full(max(present + [NO_LABEL]) + 1, class_map.ignore_index, np.int64)
    lut[NO_LABEL] = NO_LABEL
    bad: dict[int, str] = {}
    for code in present:
        name = (
            names.get(code)
            if names is not None
            else (class_map.names[code] if 0 <= code < len(class_map) else None)
        )
        if name == "@ignore":
            continue
        if name in class_map.names:
            lut[code] = class_map.names.index(name)
        else:
            bad[code] = "unnamed" if name is None else repr(name)
    if bad and unknown == "error":
        shown = ", ".join(f"{c} ({n})" for c, n in sorted(bad.items()))
        raise InputError(
            f"label mask {source} has codes {shown} that map to no class of {list(class_map.names)}: "
            "name them in label_classes (a list in code order or {code: name}, '@ignore' allowed) "
            "or set unknown_labels='ignore'"
        )
    return lut


def mask_to_grid(
    mask: np.ndarray,
    grid_shape: tuple[int, int],
    cell_size: float,
    slide_dims: tuple[int, int],
    downsample: float | None,
    source: str,
) -> np.ndarray:
    """Nearest-sample the mask at every grid cell's centre.

    Without ``downsample`` the mask is stretched over the slide (aspect ratio checked, one
    mask pixel of rounding allowed); with it, mask pixel (i, j) covers level-0 pixels
    ``[j * downsample, (j + 1) * downsample)``.
    """
    h, w = mask.shape
    sw, sh = slide_dims
    if downsample is None:
        rel = abs((w / h) / (sw / sh) - 1.0)
        if rel > 0.02 + 1.0 / min(w, h):
            raise InputError(
                f"label mask {source} is {w} x {h} (aspect {w / h:.3f}) but the slide is "
                f"{sw} x {sh} (aspect {sw / sh:.3f}): it is not a downsample of this slide; "
                "check that mask and slide belong together (or give the mask's downsample)"
            )
        fx, fy = sw / w, sh / h
    else:
        ds = float(downsample)
        if abs(w * ds - sw) > ds + 1 or abs(h * ds - sh) > ds + 1:
            raise InputError(
                f"label mask {source} is {w} x {h} at downsample {ds:g}, covering "
                f"{w * ds:.0f} x {h * ds:.0f} level-0 pixels, but the slide is {sw} x {sh}"
            )
        fx = fy = ds
    rows, cols = grid_shape
    centre_y = (np.arange(rows) + 0.5) * cell_size
    centre_x = (np.arange(cols) + 0.5) * cell_size
    ri = np.clip((centre_y / fy).astype(np.int64), 0, h - 1)
    ci = np.clip((centre_x / fx).astype(np.int64), 0, w - 1)
    return mask[ri[:, None], ci[None, :]]
