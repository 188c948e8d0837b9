"""The options the slide samplers (``heterogeneous``, ``entropy``) share, checked when the
sampler is made: slides and their annotations or label masks, classes, resolution, windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from htd_core import ClassMap
from htd_core.errors import InputError
from htd_core.types import class_names
from htd_plugins.slides.classmap import ClassMapSpec
from htd_plugins.slides.inputs import SlideInput, check_files_exist, slide_inputs
from htd_plugins.slides.tissue import check_method

PathLike = str | Path


@dataclass(kw_only=True, eq=False)
class SlideSamplerOptions:
    """Options shared by the slide samplers, checked (see docs/sampling.md for each).

    ``slide`` is a path, a list of paths, or a ``.csv`` with columns ``slide`` and optionally
    ``annotations`` (``;``-separated), ``label_mask``, ``slide_mpp``. Per-slide options
    (``annotations``, ``label_mask``, ``slide_mpp``) are one value for one slide, or a list
    aligned with the slides. ``region`` (x0, y0, x1, y1), fractions of each slide's width and
    height, keeps the windows that lie wholly inside it (a spatial train / held-out split).
    """

    slide: PathLike | Sequence[PathLike]
    classes: Sequence[str] | None = None
    annotations: PathLike | Sequence[Any] | None = None
    label_mask: PathLike | Sequence[PathLike | None] | None = None
    label_classes: Any = None
    label_colors: Any = None
    label_map: Mapping[str, str] | None = None
    unknown_labels: str = "error"
    unannotated: str = "ignore"
    background: str = "ignore"
    tissue: str = "morphological"
    precedence: str | Sequence[str] = "area"
    annotation_scale: float = 1.0
    slide_mpp: float | Sequence[float | None] | None = None
    mpp: float | None = None
    objective_power: float | None = None
    level: int | None = None
    patch_size: int = 256
    stride: int | None = None
    positions: str = "grid"
    num_candidates: int = 2000
    cell_px: int | None = None
    min_labeled: float = 0.5
    max_overlap: float = 0.5
    limit: int | None = None
    limit_per_slide: int | None = None
    seed: int = 0
    region: Sequence[float] | None = None

    def __post_init__(self) -> None:
        self.inputs = self._slide_inputs()
        classes = self._default_classes() if self.classes is None else self.classes
        names = [str(c) for c in ([classes] if isinstance(classes, str) else classes)]
        if self.background == "class" and "background" not in names:
            names.append("background")
        elif self.background != "ignore" and self.background != "class":
            raise InputError(f"background={self.background!r}: use 'ignore' or 'class'")
        self._class_map = ClassMap(class_names(names, f"classes={names}"))
        _positive_int("patch_size", self.patch_size)
        self.stride = self.patch_size // 2 if self.stride is None else self.stride
        _positive_int("stride", self.stride)
        if self.cell_px is None:
            self.cell_px = math.gcd(self.patch_size, self.stride, 8)
        _positive_int("cell_px", self.cell_px)
        if self.patch_size % self.cell_px or self.stride % self.cell_px:
            raise InputError(
                f"cell_px={self.cell_px} must divide patch_size={self.patch_size} and "
                f"stride={self.stride}: the class map is decided in whole cells"
            )
        if self.positions not in ("grid", "random"):
            raise InputError(f"positions={self.positions!r}: use 'grid' or 'random'")
        _positive_int("num_candidates", self.num_candidates)
        for name in ("limit", "limit_per_slide"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name in ("max_overlap", "min_labeled"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.0 <= value <= 1.0
            ):
                raise InputError(f"{name}={value!r}: give a fraction in [0, 1]")
        if self.unknown_labels not in ("error", "ignore"):
            raise InputError(f"unknown_labels={self.unknown_labels!r}: use 'error' or 'ignore'")
        check_method(self.tissue)
        self._check_resolution()
        r = self.region
        if r is not None and not (len(r) == 4 and 0 <= r[0] < r[2] <= 1 and 0 <= r[1] < r[3] <= 1):
            raise InputError(f"region={r!r}: give [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1, same y")
        self._check_annotation_options()
        check_files_exist(self.inputs)
        self._spec(self.inputs[0]).index_of("unannotated", self.unannotated)

    def _check_resolution(self) -> None:
        given = [n for n in ("mpp", "objective_power", "level") if getattr(self, n) is not None]
        if len(given) > 1:
            raise InputError(f"give one of mpp, objective_power or level, not {given}")
        for name in ("mpp", "objective_power", "annotation_scale"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise InputError(f"{name}={value!r}: give a positive number")
        if self.level is not None and (
            isinstance(self.level, bool) or not isinstance(self.level, int) or self.level < 0
        ):
            raise InputError(f"level={self.level!r}: give a pyramid level 0, 1, ...")

    def _check_annotation_options(self) -> None:
        from htd_plugins.slides.label_masks import check_label_colors

        check_label_colors(self.label_colors)
        if isinstance(self.label_colors, Mapping) and self.label_classes is not None:
            raise InputError("give label_colors (a colour per class) or label_classes, not both")
        if self.label_map is not None and not isinstance(self.label_map, Mapping):
            raise InputError(f"label_map={self.label_map!r}: give a mapping {{label: class name}}")
        if isinstance(self.precedence, str):
            if self.precedence != "area":
                raise InputError(
                    f"precedence={self.precedence!r}: use 'area' or a list of class names (bottom first)"
                )
        else:
            unknown = [n for n in self.precedence if n not in self._class_map.names]
            if unknown:
                raise InputError(
                    f"precedence names {unknown} that are not classes {list(self._class_map.names)}"
                )

    def _default_classes(self) -> list[str]:
        """Class names from the first label mask's names (e.g. a discovery pseudo map)."""
        from htd_plugins.slides.label_masks import color_code_names, load_code_names

        mask = next((i.label_mask for i in self.inputs if i.label_mask is not None), None)
        names = color_code_names(self.label_colors) or (
            load_code_names(self.label_classes, mask)[0]
            if mask is not None and mask.exists()
            else None
        )
        if not names:
            raise InputError(
                "give classes (the tissue class names), or a label mask whose classes are named "
                "by label_classes or a <mask>.json sidecar"
            )
        return [n for _, n in sorted(names.items()) if n != "@ignore"]

    # -- classes ------------------------------------------------------------------------
    @property
    def class_map(self) -> ClassMap:
        return self._class_map

    def _spec(self, item: SlideInput) -> ClassMapSpec:
        return ClassMapSpec(
            class_map=self._class_map,
            annotations=item.annotations,
            label_mask=item.label_mask,
            label_classes=self.label_classes,
            label_colors=self.label_colors,
            label_map=self.label_map,
            unknown_labels=self.unknown_labels,
            unannotated=self.unannotated,
            background=self.background,
            tissue=self.tissue,
            precedence=self.precedence,
            annotation_scale=self.annotation_scale,
        )

    def _slide_inputs(self) -> list[SlideInput]:
        return slide_inputs(self.slide, self.annotations, self.label_mask, self.slide_mpp)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}={value!r}: give a positive integer")
