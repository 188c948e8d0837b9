"""Abstract interfaces every plugin component implements."""

from htd_core.interfaces.backbone import Backbone
from htd_core.interfaces.command import Command, make_command
from htd_core.interfaces.condition_builder import (
    ComposedConditionBuilder,
    ConditionBuilder,
    require_class_list,
)
from htd_core.interfaces.encoder import Encoder
from htd_core.interfaces.evaluator import Evaluator, ReportContext, RunSettings, markdown_table
from htd_core.interfaces.latent import Autoencoder, LatentBackbone
from htd_core.interfaces.patch_sampler import PatchSampler

__all__ = [
    "Autoencoder",
    "Backbone",
    "Command",
    "ComposedConditionBuilder",
    "ConditionBuilder",
    "Encoder",
    "Evaluator",
    "LatentBackbone",
    "PatchSampler",
    "ReportContext",
    "RunSettings",
    "make_command",
    "markdown_table",
    "require_class_list",
]
