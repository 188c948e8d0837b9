"""Abstract interfaces every plugin component implements."""

from htd_core.interfaces.backbone import Backbone
from htd_core.interfaces.condition_builder import (
    ComposedConditionBuilder,
    ConditionBuilder,
    last_provenance,
    require_class_list,
)
from htd_core.interfaces.encoder import Encoder
from htd_core.interfaces.evaluator import Evaluator
from htd_core.interfaces.patch_sampler import PatchSampler

__all__ = [
    "Backbone",
    "ComposedConditionBuilder",
    "ConditionBuilder",
    "Encoder",
    "Evaluator",
    "PatchSampler",
    "last_provenance",
    "require_class_list",
]
