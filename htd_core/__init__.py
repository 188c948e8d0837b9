"""htd core engine: interfaces, types, registries, plugin loading and pipelines.

Imports only the standard library, numpy, torch and pluggy; plugins import their heavy
libraries (diffusers, monai, tiatoolbox, timm, scikit-learn) lazily.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from htd_core.errors import HtdError, InputError
from htd_core.hookspecs import hookimpl
from htd_core.interfaces import (
    Backbone,
    Command,
    ComposedConditionBuilder,
    ConditionBuilder,
    Encoder,
    Evaluator,
    PatchSampler,
)
from htd_core.pipeline import Pipeline
from htd_core.plugins import create, get_plugin_manager, get_registry
from htd_core.registry import Registry
from htd_core.types import IGNORE_INDEX, ClassMap, Condition, TissueSample

try:
    __version__ = version("heterotissue")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "IGNORE_INDEX",
    "Backbone",
    "Command",
    "ClassMap",
    "ComposedConditionBuilder",
    "Condition",
    "ConditionBuilder",
    "Encoder",
    "Evaluator",
    "HtdError",
    "InputError",
    "PatchSampler",
    "Pipeline",
    "Registry",
    "TissueSample",
    "__version__",
    "create",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
]
