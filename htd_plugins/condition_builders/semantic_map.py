"""``semantic_map``: the layout M as K one-hot channels at pixel resolution."""

from __future__ import annotations

import numpy as np
import torch

from htd_core import ClassMap, Condition, ConditionBuilder, TissueSample, hookimpl
from htd_core.interfaces import require_class_list


class SemanticMapBuilder(ConditionBuilder):
    """One-hot class channels ``map:<class>``; ignored pixels are all-zero.

    Args:
        classes: expected class names; when given, a sample whose class map differs is refused
            (the backbone's channel count is fixed at training time).
    """

    def __init__(self, classes: list[str] | tuple[str, ...] | None = None) -> None:
        self.classes = tuple(classes) if classes is not None else None

    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        require_class_list("semantic_map", self.classes, class_map)
        return tuple(f"map:{n}" for n in class_map.names)

    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        cm = sample.class_map
        channels = self.channels(cm)
        cm.check_mask(sample.mask, f"mask of sample {sample.meta.get('id', '')}".strip())
        return Condition(spatial=one_hot(sample.mask, len(cm)), channels=channels)

    def __repr__(self) -> str:
        return "SemanticMapBuilder()"


def one_hot(mask: np.ndarray, num_classes: int) -> torch.Tensor:
    """K x H x W float32 one-hot of an index mask; values >= K (ignore) give all-zero."""
    m = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64, copy=False))
    valid = m < num_classes
    out = torch.zeros((num_classes + 1, *m.shape), dtype=torch.float32)
    out.scatter_(0, torch.where(valid, m, num_classes)[None], 1.0)
    return out[:num_classes]


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("semantic_map", SemanticMapBuilder)
