"""htd core engine: interfaces, types, registries, plugin loading and pipelines.

Imports only the standard library, numpy, torch and pluggy; plugins import their heavy
libraries (diffusers, monai, tiatoolbox, timm, scikit-learn) lazily. The names below are
loaded on first use (PEP 562), so ``import htd_core`` (and the pytest plugin inside it) costs
nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_HOME = {
    "HtdError": "errors",
    "InputError": "errors",
    "GenerationOptions": "generation",
    "hookimpl": "hookspecs",
    "Autoencoder": "interfaces",
    "Backbone": "interfaces",
    "Command": "interfaces",
    "ComposedConditionBuilder": "interfaces",
    "ConditionBuilder": "interfaces",
    "Encoder": "interfaces",
    "Evaluator": "interfaces",
    "LatentBackbone": "interfaces",
    "PatchSampler": "interfaces",
    "Pipeline": "pipeline",
    "create": "plugins",
    "get_plugin_manager": "plugins",
    "get_registry": "plugins",
    "Registry": "registry",
    "IGNORE_INDEX": "types",
    "ClassMap": "types",
    "Condition": "types",
    "TissueSample": "types",
}

__all__ = sorted([*_HOME, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("heterotissue")
        except PackageNotFoundError:  # running from a source tree without install
            value = "0.0.0+unknown"
    else:
        try:  # a submodule used as an attribute (htd_core.pipeline...)
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
