"""``curriculum``: a PatchSampler wrapper that coarsens pseudo maps early in training.

At training step t the granularity is k'(t) = k_min + (k_max - k_min) * min(1, t / T_warmup),
snapped to a level of the merge tree. The wrapped sampler yields maps at k_max; the wrapper
re-expresses each one at k'(t) *without changing the class list*: every k_max class is
written as the **representative** of its group at level k'(t), the lowest k_max class id in
that group (groups are contiguous id ranges, see :mod:`tree`). So the semantic-map condition
always has k_max channels and one backbone trains across the whole curriculum; at coarse
levels only k'(t) of the channels are ever on, and the crops of a coarse class are cut from
its whole (merged) region.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import ClassMap, PatchSampler, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_plugins.discovery.tree import PhenotypeTree, class_names, palette

SNAPS = ("nearest", "down", "up")


def load_tree(tree: str | Path | PhenotypeTree) -> PhenotypeTree:
    """A merge tree from ``tree.json`` (of a clustering or maps folder, or the folder itself)."""
    if isinstance(tree, PhenotypeTree):
        return tree
    path = Path(tree)
    path = path / "tree.json" if path.is_dir() else path
    if not path.is_file():
        raise InputError(
            f"merge tree {path} not found: give the maps or clustering folder's tree.json"
        )
    data = json.loads(path.read_text())
    return PhenotypeTree.from_dict(data.get("tree", data))


def granularity(t: int, k_min: int, k_max: int, warmup_steps: int) -> float:
    """k'(t) before snapping."""
    return k_min + (k_max - k_min) * min(1.0, t / warmup_steps if warmup_steps > 0 else 1.0)


def snap(k: float, levels: tuple[int, ...], mode: str = "nearest") -> int:
    """The level of ``levels`` closest to ``k`` (``down``: largest <= k; ``up``: smallest >= k)."""
    below = [v for v in levels if v <= k + 1e-9]
    above = [v for v in levels if v >= k - 1e-9]
    if mode == "down":
        return max(below) if below else min(levels)
    if mode == "up":
        return min(above) if above else max(levels)
    return min(levels, key=lambda v: (abs(v - k), v))


def representatives(tree: PhenotypeTree, k_max: int, k: int) -> np.ndarray:
    """For each class at k_max, the lowest k_max class of its group at level ``k``."""
    parent = tree.parent_map(k_max, k)
    first = np.full(k, k_max, np.int64)
    np.minimum.at(first, parent, np.arange(k_max))
    return first[parent]


class CurriculumSampler(PatchSampler):
    """Coarse-to-fine pseudo maps k'(t) over a sampler that yields maps at k_max.

    Args:
        sampler: the wrapped sampler: an instance, a registered name, or a mapping
            ``{"name": ..., **options}`` (e.g. ``entropy`` over ``maps/k100`` masks).
        tree: ``tree.json`` of the maps (or clustering) folder, or that folder.
        k_min: coarsest granularity (snapped to a tree level).
        k_max: finest granularity; the wrapped sampler's classes must be this level's
            (default: the finest level of the tree).
        warmup_steps: T_warmup, in training steps.
        batch_size: samples per training step (the clock advances one step per batch).
        start_step: step of the first yielded sample (resume training).
        snap: ``nearest`` (default), ``down`` or ``up`` to the available levels.
    """

    def __init__(
        self,
        sampler: PatchSampler | str | Mapping[str, Any],
        tree: str | Path | PhenotypeTree,
        k_min: int = 5,
        k_max: int | None = None,
        warmup_steps: int = 10_000,
        batch_size: int = 1,
        start_step: int = 0,
        snap: str = "nearest",
    ) -> None:
        self.tree = load_tree(tree)
        levels = self.tree.levels
        self.k_max = int(k_max) if k_max is not None else max(levels)
        if self.k_max not in levels:
            raise InputError(
                f"k_max={k_max} is not a level of the merge tree; levels: {list(levels)}"
            )
        if not isinstance(k_min, int) or k_min < 1 or k_min > self.k_max:
            raise InputError(f"k_min={k_min!r} must be an integer in [1, k_max={self.k_max}]")
        if snap not in SNAPS:
            raise InputError(f"snap={snap!r}: use one of {list(SNAPS)}")
        for name, value, low in (("warmup_steps", warmup_steps, 0), ("batch_size", batch_size, 1),
                                 ("start_step", start_step, 0)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise InputError(f"{name}={value!r} must be an integer >= {low}")
        self.levels = tuple(v for v in levels if snap_floor(k_min, levels) <= v <= self.k_max)
        self.k_min, self.warmup_steps, self.batch_size, self.snap = (
            k_min,
            warmup_steps,
            batch_size,
            snap,
        )
        self.inner = _make_sampler(sampler)
        self._class_map = ClassMap(class_names(self.k_max), tuple(palette(self.k_max)))
        if tuple(self.inner.class_map.names) != self._class_map.names:
            raise InputError(
                f"the wrapped sampler yields classes {list(self.inner.class_map.names)[:4]}... "
                f"({len(self.inner.class_map)}) but the curriculum needs the k_max={self.k_max} "
                f"phenotypes {list(self._class_map.names)[:4]}...: point it at the maps of "
                f"k{self.k_max:03d} with those class names"
            )
        self._reps = {k: representatives(self.tree, self.k_max, k) for k in self.levels}
        self.step = start_step
        self._yielded = 0

    @property
    def class_map(self) -> ClassMap:
        return self._class_map

    def set_step(self, step: int) -> None:
        """Set the training step (a trainer that knows its step calls this)."""
        self.step, self._yielded = int(step), 0

    def current_k(self, step: int | None = None) -> int:
        t = self.step if step is None else step
        return snap(
            granularity(t, self.k_min, self.k_max, self.warmup_steps), self.levels, self.snap
        )

    def coarsen_mask(self, mask: np.ndarray, k: int) -> np.ndarray:
        """A k_max mask re-expressed at level ``k`` (ignore index kept)."""
        if k not in self._reps:
            raise InputError(f"k={k} is not a curriculum level; levels: {list(self.levels)}")
        lut = np.arange(256, dtype=np.int64)
        lut[: self.k_max] = self._reps[k]
        return lut[np.asarray(mask).astype(np.int64)].astype(np.asarray(mask).dtype)

    def __iter__(self) -> Iterator[TissueSample]:
        for sample in self.inner:
            k = self.current_k()
            meta = {**sample.meta, "granularity": k, "curriculum_step": self.step}
            yield TissueSample(
                sample.image, self.coarsen_mask(sample.mask, k), self._class_map, meta
            )
            self._yielded += 1
            if self._yielded % self.batch_size == 0:
                self.step += 1


def snap_floor(k_min: int, levels: tuple[int, ...]) -> int:
    """The coarsest level the curriculum may use for ``k_min``."""
    return snap(k_min, levels, "nearest")


def _make_sampler(spec: PatchSampler | str | Mapping[str, Any]) -> PatchSampler:
    from htd_core.config import resolve_component
    from htd_core.plugins import get_registry

    return resolve_component(spec, get_registry("patch_samplers"), "curriculum: sampler")


@hookimpl
def htd_register_patch_samplers(registry) -> None:
    registry.register("curriculum", CurriculumSampler)
