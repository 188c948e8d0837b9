"""Shared machinery of the slide samplers (``heterogeneous``, ``entropy``).

Per slide: open it, build the low-resolution class map, lay candidate windows on it (a grid
or seeded random positions), decide them all at once from their compositions, and read
full-resolution pixels only for the windows a subclass selects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from htd_core import PatchSampler, TissueSample
from htd_core.errors import InputError
from htd_plugins.slides.classmap import SlideGrid, build_class_map
from htd_plugins.slides.composition import fractions, limit_overlap, window_counts
from htd_plugins.slides.sampler_options import SlideSamplerOptions
from htd_plugins.slides.wsi import Slide


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
class SlideSampler(SlideSamplerOptions, PatchSampler):
    """Plans each slide's windows on its class map and yields them (subclasses decide which)."""

    _plans: dict[int, SlidePlan] = field(default_factory=dict, init=False, repr=False)

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
