"""Test helpers for htd and for plugin authors.

- fixtures (auto-loaded by pytest through the ``pytest11`` entry point ``htd``; importing them
  imports nothing heavy, so every pytest session of the environment pays nothing until a
  fixture is used): ``htd_manager``, ``builtin_manager``, ``register_plugin``,
  ``shared_data``, ``taef2_weights``;
- conformance mixins: subclass one in a ``Test*`` class and implement its ``make_*`` method to
  run the same checks the built-ins pass;
- samples: small synthetic samples for shape tests and real tiles from ``../shared/data``.

Names are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "BackboneConformance": "conformance",
    "ConditionBuilderConformance": "conformance",
    "EncoderConformance": "conformance",
    "EvaluatorConformance": "conformance",
    "PatchSamplerConformance": "conformance",
    "real_tiles": "samples",
    "synthetic_sample": "samples",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
