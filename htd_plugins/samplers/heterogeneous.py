"""``heterogeneous``: patches of annotated slides in which several tissue classes co-exist.

Stage one of HeteroTissue-Diffuse: a patch is kept when at least ``min_classes`` classes each
cover a fraction within [``min_frac``, ``max_frac``] of its labelled area (default two classes,
20-80 %). Candidates are decided on the slide's low-resolution class map; full-resolution
pixels are read only for the patches kept. ``mode="homogeneous"`` (one class above
``homogeneous_frac``) gives the baseline's single-tissue patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_plugins.slides.composition import CompositionRule, interleave_groups
from htd_plugins.slides.sampling import SlideSampler


@dataclass(kw_only=True, eq=False)
class HeterogeneousSampler(SlideSampler):
    """Patches whose class composition is heterogeneous (or homogeneous, for baselines).

    Options beyond the shared slide options: ``mode``, ``min_frac``, ``max_frac``,
    ``min_classes``, ``homogeneous_frac``, ``balance`` (round-robin over class pairs, so any
    prefix of the output is balanced) and ``order`` (``shuffle`` with ``seed``, or ``scan``).
    """

    mode: str = "heterogeneous"
    min_frac: float = 0.2
    max_frac: float = 0.8
    min_classes: int = 2
    homogeneous_frac: float = 0.9
    balance: bool = True
    order: str = "shuffle"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.order not in ("shuffle", "scan"):
            raise InputError(f"order={self.order!r}: use 'shuffle' or 'scan'")
        exclude = (self.class_map.names.index("background"),) if self.background == "class" else ()
        self.rule = CompositionRule(
            mode=self.mode,
            min_frac=self.min_frac,
            max_frac=self.max_frac,
            min_classes=self.min_classes,
            homogeneous_frac=self.homogeneous_frac,
            min_labeled=self.min_labeled,
            exclude=exclude,
        )
        if self.mode == "heterogeneous" and self.min_classes > len(self.class_map) - len(exclude):
            raise InputError(
                f"min_classes={self.min_classes} but only {len(self.class_map) - len(exclude)} "
                f"tissue classes {list(self.class_map.names)}: give more classes or lower min_classes"
            )

    def select(
        self, frac: np.ndarray, labelled: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        ok = np.flatnonzero(self.rule.accept(frac, labelled))
        if self.order == "shuffle":
            ok = rng.permutation(ok)
        if self.balance and len(ok):
            ok = interleave_groups(ok, self.rule.group(frac))
        return ok


@hookimpl
def htd_register_patch_samplers(registry) -> None:
    registry.register("heterogeneous", HeterogeneousSampler)
