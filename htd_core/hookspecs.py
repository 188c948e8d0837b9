"""The hook surface of htd: one ``register`` hook per extension point.

A plugin implements any of these with ``@htd_core.hookimpl`` and calls
``registry.register(name, factory)`` for each component it provides.
"""

from __future__ import annotations

import pluggy

from htd_core.registry import Registry

PROJECT = "htd"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorator of a plugin's hook functions (``@hookimpl def htd_register_backbones(registry)``).
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def htd_register_condition_builders(registry: Registry) -> None:
    """Register ConditionBuilder factories (semantic map, crops, embeddings...)."""


@hookspec
def htd_register_backbones(registry: Registry) -> None:
    """Register Backbone factories (the generative models)."""


@hookspec
def htd_register_patch_samplers(registry: Registry) -> None:
    """Register PatchSampler factories (slides or tile folders to TissueSamples)."""


@hookspec
def htd_register_evaluators(registry: Registry) -> None:
    """Register Evaluator factories (Frechet distance, downstream IoU, privacy...)."""


@hookspec
def htd_register_encoders(registry: Registry) -> None:
    """Register Encoder factories (foundation models loaded from local weights)."""


@hookspec
def htd_register_commands(registry: Registry) -> None:
    """Register CLI verbs: Command subclasses, each under its verb name (``htd <name>``)."""
