"""``entropy``: high tissue-diversity regions of slides with a (pseudo) class map.

For unannotated slides ranked by diversity: each candidate region r gets
H(r) = -sum_i p_i(r) log p_i(r) from its class fractions on the low-resolution map, and
regions are drawn preferring high entropy (tumour-stroma interfaces): the top ``q`` fraction
by H (``selection="top_q"``), or a weighted random order with probability proportional to
H^beta (``selection="power"``, seeded).

With ``background="class"`` the background is not a tissue: as the heterogeneous sampler
never lets it qualify, H is computed over the tissue classes only (their fractions renormalised
to the tissue area) and a region needs ``min_labeled`` of its area in tissue classes, so a
tissue/glass edge is not "diverse".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_plugins.slides.composition import entropy
from htd_plugins.slides.sampling import SlideSampler


@dataclass(kw_only=True, eq=False)
class EntropySampler(SlideSampler):
    """Patches drawn by tissue-diversity entropy of their class composition.

    Options beyond the shared slide options: ``selection`` (``top_q`` or ``power``), ``q``
    (fraction kept by ``top_q``), ``beta`` (exponent of ``power``) and ``min_entropy``
    (regions below it are never drawn; default: any mix of two classes or more). With
    ``background="class"``, background counts as unlabelled for H and ``min_labeled``.
    """

    selection: str = "top_q"
    q: float = 0.1
    beta: float = 1.0
    min_entropy: float = 1e-9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.selection not in ("top_q", "power"):
            raise InputError(f"selection={self.selection!r}: use 'top_q' or 'power'")
        if not isinstance(self.q, int | float) or not 0.0 < self.q <= 1.0:
            raise InputError(f"q={self.q!r}: give the kept fraction in (0, 1]")
        if not isinstance(self.beta, int | float) or self.beta < 0:
            raise InputError(f"beta={self.beta!r}: give an exponent >= 0")
        if not isinstance(self.min_entropy, int | float) or self.min_entropy < 0:
            raise InputError(f"min_entropy={self.min_entropy!r}: give a value >= 0")
        names = self.class_map.names
        self._background = names.index("background") if self.background == "class" else None

    def select(
        self, frac: np.ndarray, labelled: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        if self._background is not None:  # H over the tissue classes, of the tissue area
            tissue = np.delete(frac, self._background, axis=1)
            share = tissue.sum(axis=1)
            frac = tissue / np.maximum(share, 1e-12)[:, None]
            labelled = labelled * share
        h = entropy(frac)
        ok = np.flatnonzero(
            (labelled >= self.min_labeled) & (labelled > 0) & (h >= self.min_entropy)
        )
        if self.selection == "top_q":
            ranked = ok[np.argsort(-h[ok], kind="stable")]
            return ranked[: math.ceil(self.q * len(ranked))]
        # Efraimidis-Spirakis: keys log(u) / w give a weighted order without replacement.
        weights = h[ok] ** self.beta
        keys = np.log(rng.random(len(ok))) / np.maximum(weights, 1e-300)
        return ok[np.argsort(-keys, kind="stable")]


@hookimpl
def htd_register_patch_samplers(registry) -> None:
    registry.register("entropy", EntropySampler)
