"""Shared machinery of the slide samplers (``heterogeneous``, ``entropy``).

Per slide: open it, build the low-resolution class map, lay candidate windows on it (a grid
or seeded random positions), decide them all at once from their compositions, and read
full-resolution pixels only for the windows a subclass selects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import ClassMap, PatchSampler, TissueSample
from htd_core.errors import InputError
from htd_plugins.slides.classmap import ClassMapSpec, SlideGrid, build_class_map
from htd_plugins.slides.composition import fractions, limit_overlap, window_counts
from htd_plugins.slides.inputs import SlideInput, check_files_exist, slide_inputs
from htd_plugins.slides.tissue import check_method
from htd_plugins.slides.wsi import Slide

PathLike = str | Path


@dataclass
class SlidePlan:
    """A slide's class map and its selected windows (x, y at the read mpp, in yield order)."""

    slide: Slide
    grid: SlideGrid
    cells: np.ndarray
    xy: np.ndarray
    candidates: int
    accepted: int
    unlabelled: int = 0  # candidates below min_labeled (no tissue or annotation under them)


@dataclass(kw_only=True, eq=False)
class SlideSampler(PatchSampler):
    """Options shared by the slide samplers (see docs/sampling.md for each).

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
    _plans: dict[int, SlidePlan] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.inputs = self._slide_inputs()
        classes = self._default_classes() if self.classes is None else self.classes
        names = [str(c) for c in ([classes] if isinstance(classes, str) else classes)]
        if self.background == "class" and "background" not in names:
            names.append("background")
        elif self.background != "ignore" and self.background != "class":
            raise InputError(f"background={self.background!r}: use 'ignore' or 'class'")
        self._class_map = ClassMap(tuple(names))
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

    # -- options ------------------------------------------------------------------------
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

    # -- planning -----------------------------------------------------------------------
    def select(
        self, frac: np.ndarray, labelled: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Indices of the candidates to yield, in order (subclasses decide)."""
        raise NotImplementedError

    def plan(self, index: int) -> SlidePlan:
        """Class map and selected windows of slide ``index`` (cached)."""
        if index in self._plans:
            return self._plans[index]
        item = self.inputs[index]
        slide = Slide(item.path, item.slide_mpp)
        mpp = slide.resolve_mpp(self.mpp, self.objective_power, self.level)
        width, height = slide.dimensions_at(mpp)
        if self.patch_size > min(width, height):
            raise InputError(
                f"patch_size={self.patch_size} is larger than slide {item.path} at {mpp:g} um/px "
                f"({width} x {height}): use a smaller patch or a finer mpp"
            )
        grid = SlideGrid(mpp, slide.base_mpp, width, height, int(self.cell_px))
        cells, _ = build_class_map(slide, grid, self._spec(item))
        xy = self.candidates(grid, np.random.default_rng([self.seed, index]))
        if self.region is not None:  # windows wholly inside the region
            x0, y0, x1, y1 = np.asarray(self.region) * ([grid.width, grid.height] * 2)
            y, x, p = xy[:, 0], xy[:, 1], self.patch_size
            xy = xy[(x >= x0) & (x + p <= x1) & (y >= y0) & (y + p <= y1)]
        window = self.patch_size // grid.cell_px
        block = math.gcd(window, self.stride // grid.cell_px) if self.positions == "grid" else 1
        counts = window_counts(cells, len(self._class_map), xy // grid.cell_px, window, block)
        frac, labelled = fractions(counts, window * window)
        order = self.select(frac, labelled, np.random.default_rng([self.seed, index, 1]))
        chosen = limit_overlap(
            xy[:, ::-1], order, self.patch_size, self.max_overlap, self.limit_per_slide
        )
        unlabelled = int(((labelled < self.min_labeled) | (labelled <= 0)).sum())
        plan = SlidePlan(slide, grid, cells, xy[chosen][:, ::-1], len(xy), len(order), unlabelled)
        self._plans[index] = plan
        return plan

    def candidates(self, grid: SlideGrid, rng: np.random.Generator) -> np.ndarray:
        """N x 2 (row, col) top-left pixels at the read mpp, multiples of ``cell_px``."""
        p, c = self.patch_size, grid.cell_px
        if self.positions == "grid":  # tiatoolbox's sliding-window grid, windows inside the slide
            ys = np.arange(0, grid.height - p + 1, self.stride)
            xs = np.arange(0, grid.width - p + 1, self.stride)
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
            return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int64)
        rows, cols = (grid.height - p) // c + 1, (grid.width - p) // c + 1
        n = min(self.num_candidates, rows * cols)
        flat = rng.choice(rows * cols, size=n, replace=False)
        return np.stack([flat // cols * c, flat % cols * c], axis=1).astype(np.int64)

    def expected_samples(self) -> int:
        """Samples this sampler yields: every slide's plan (cached; iteration reuses it)."""
        total = sum(len(self.plan(i).xy) for i in range(len(self.inputs)))
        return total if self.limit is None else min(total, self.limit)

    # -- iteration ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[TissueSample]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[TissueSample]:
        """Samples from index ``start`` on; skipped samples are never read (fast resume)."""
        produced = 0
        for index in range(len(self.inputs)):
            plan = self.plan(index)
            for x, y in plan.xy:
                if self.limit is not None and produced >= self.limit:
                    return
                if produced >= start:
                    yield self.read_sample(plan, int(x), int(y))
                produced += 1
        if produced == 0:
            raise InputError(self.why_empty())

    def why_empty(self) -> str:
        """Why no window was selected: the windows scanned and how many each rule rejected."""
        plans = [self.plan(i) for i in range(len(self.inputs))]
        scanned = sum(p.candidates for p in plans)
        unlabelled = sum(p.unlabelled for p in plans)
        rule = getattr(self, "rule", None) or f"{type(self).__name__}.select"
        return (
            f"0 samples: {scanned} windows of {self.patch_size} px scanned on {len(plans)} "
            f"slide(s); {unlabelled} had less than min_labeled={self.min_labeled} of their area "
            f"labelled (no tissue, annotation or label there), the other {scanned - unlabelled} "
            f"were rejected by {rule}. Check the annotations and classes, or relax the rule "
            "(min_labeled, min_frac / max_frac, min_classes)"
        )

    def read_sample(self, plan: SlidePlan, x: int, y: int) -> TissueSample:
        """The full-resolution patch at (x, y) and its mask from the class map."""
        grid, c, p = plan.grid, plan.grid.cell_px, self.patch_size
        image = plan.slide.read(x, y, p, grid.mpp)
        block = plan.cells[y // c : (y + p) // c, x // c : (x + p) // c]
        mask = np.repeat(np.repeat(block, c, axis=0), c, axis=1)
        x0, y0 = grid.to_level0(x, y)
        meta = {
            "slide_id": plan.slide.slide_id,
            "x": x0,
            "y": y0,
            "level": plan.slide.level_for(grid.mpp),
            "mpp": round(grid.mpp, 6),
            "patch_size": p,
        }
        return TissueSample(image, mask, self._class_map, meta)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}={value!r}: give a positive integer")
