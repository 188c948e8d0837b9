"""``curriculum``: a PatchSampler wrapper that coarsens pseudo maps early in training.

At optimizer step t the granularity is k'(t) = k_min + (k_max - k_min) * min(1, t / T_warmup)
(the paper's schedule), snapped to a level of the merge tree. Iterating yields the wrapped
sampler's maps at k_max; the trainer calls :meth:`CurriculumSampler.for_step` on every sample
of the batch it draws at step t (the :class:`~htd_core.PatchSampler` hook), which re-expresses
the mask at k'(t) *without changing the class list*: every k_max class is written as the
**representative** of its group at level k'(t), the lowest k_max class id in that group
(groups are contiguous id ranges, see :class:`htd_plugins.slides.PhenotypeTree`). So the
semantic-map condition always has k_max channels and one backbone trains across the whole
curriculum; at coarse levels only k'(t) of the channels are ever on, and the crops of a coarse
class are cut from its whole (merged) region. The granularity depends only on the step, so it
does not depend on how many patches the sampler yields, and a resumed run continues the
schedule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import ClassMap, PatchSampler, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_plugins.slides import PhenotypeTree, class_names

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

    Iterating yields the k_max maps; a trainer given this sampler calls :meth:`for_step` on
    every sample of the batch of optimizer step t (``fit`` of the latent diffusion backbones,
    so ``htd train`` too), which re-expresses it at k'(t).

    Args:
        sampler: the wrapped sampler: an instance, a registered name, or a mapping
            ``{"name": ..., **options}`` (e.g. ``entropy`` over ``maps/k100`` masks).
        tree: ``tree.json`` of the maps (or clustering) folder, or that folder.
        k_min: coarsest granularity (snapped to a tree level).
        k_max: finest granularity; the wrapped sampler's classes must be this level's
            (default: the finest level of the tree).
        warmup_steps: T_warmup, in optimizer steps (0: k_max from step 0).
        snap: ``nearest`` (default), ``down`` or ``up`` to the available levels.
    """

    def __init__(
        self,
        sampler: PatchSampler | str | Mapping[str, Any],
        tree: str | Path | PhenotypeTree,
        k_min: int = 5,
        k_max: int | None = None,
        warmup_steps: int = 10_000,
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
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise InputError(f"warmup_steps={warmup_steps!r} must be an integer >= 0")
        self.levels = tuple(v for v in levels if snap_floor(k_min, levels) <= v <= self.k_max)
        self.k_min, self.warmup_steps, self.snap = k_min, warmup_steps, snap
        self.inner = _make_sampler(sampler)
        wanted = class_names(self.k_max)
        if tuple(self.inner.class_map.names) != wanted:
            raise InputError(
                f"the wrapped sampler yields classes {list(self.inner.class_map.names)[:4]}... "
                f"({len(self.inner.class_map)}) but the curriculum needs the k_max={self.k_max} "
                f"phenotypes {list(wanted)[:4]}...: point it at the maps of "
                f"k{self.k_max:03d} with those class names"
            )
        self._class_map = self.inner.class_map  # its colours too: layouts sampled alike match
        self._reps = {k: representatives(self.tree, self.k_max, k) for k in self.levels}

    @property
    def class_map(self) -> ClassMap:
        return self._class_map

    def current_k(self, step: int) -> int:
        """The tree level k'(step) (snapped)."""
        t = granularity(step, self.k_min, self.k_max, self.warmup_steps)
        return snap(t, self.levels, self.snap)

    def coarsen_mask(self, mask: np.ndarray, k: int) -> np.ndarray:
        """A k_max mask re-expressed at level ``k`` (ignore index kept)."""
        if k not in self._reps:
            raise InputError(f"k={k} is not a curriculum level; levels: {list(self.levels)}")
        lut = np.arange(256, dtype=np.int64)
        lut[: self.k_max] = self._reps[k]
        return lut[np.asarray(mask).astype(np.int64)].astype(np.asarray(mask).dtype)

    def for_step(self, sample: TissueSample, step: int) -> TissueSample:
        """``sample`` (a k_max map, as iterating yields) re-expressed at k'(step).

        Raises:
            InputError: ``step`` is negative.
        """
        if step < 0:
            raise InputError(f"step={step} must be >= 0")
        k = self.current_k(step)
        meta = {**sample.meta, "granularity": k, "curriculum_step": int(step)}
        return TissueSample(sample.image, self.coarsen_mask(sample.mask, k), self._class_map, meta)

    def __iter__(self) -> Iterator[TissueSample]:
        """The wrapped sampler's samples at k_max (a trainer coarsens them per step)."""
        for sample in self.inner:
            meta = {**sample.meta, "granularity": self.k_max}
            yield TissueSample(sample.image, sample.mask, self._class_map, meta)


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
