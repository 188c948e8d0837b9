"""``boundary``: one channel marking tissue-class interfaces (tumour-stroma and the like)."""

from __future__ import annotations

import numpy as np
import torch

from htd_core import ClassMap, Condition, ConditionBuilder, TissueSample, hookimpl
from htd_core.errors import InputError


class BoundaryBuilder(ConditionBuilder):
    """1 on a class interface, falling linearly to 0 at ``max_distance`` px; 0 when ignored."""

    def __init__(self, max_distance: float = 32.0) -> None:
        if not max_distance > 0:
            raise InputError(f"boundary: max_distance must be > 0 px, got {max_distance}")
        self.max_distance = float(max_distance)

    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        return ("boundary",)

    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        from scipy.ndimage import distance_transform_edt

        cm, m = sample.class_map, sample.mask
        cm.check_mask(m)
        valid = m != cm.ignore_index
        edge = np.zeros(m.shape, bool)
        for a, b, sl_a, sl_b in (
            (m[1:], m[:-1], np.s_[1:], np.s_[:-1]),
            (m[:, 1:], m[:, :-1], np.s_[:, 1:], np.s_[:, :-1]),
        ):
            diff = (a != b) & valid[sl_a] & valid[sl_b]
            edge[sl_a] |= diff
            edge[sl_b] |= diff
        if not edge.any():
            value = np.zeros(m.shape, np.float32)
        else:
            dist = distance_transform_edt(~edge)
            value = np.clip(1.0 - dist / self.max_distance, 0.0, 1.0).astype(np.float32)
        value[~valid] = 0.0
        return Condition(spatial=torch.from_numpy(value)[None], channels=("boundary",))


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("boundary", BoundaryBuilder)
