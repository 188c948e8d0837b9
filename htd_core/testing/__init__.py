"""Test helpers for htd and for plugin authors.

- fixtures (auto-loaded by pytest through the ``pytest11`` entry point ``htd``):
  ``htd_manager``, ``register_plugin``, ``shared_data``;
- conformance mixins: subclass one in a ``Test*`` class and implement its ``make_*`` method to
  run the same checks the built-ins pass;
- samples: small synthetic samples for shape tests and real tiles from ``../shared/data``.
"""

from htd_core.testing.conformance import (
    BackboneConformance,
    ConditionBuilderConformance,
    EncoderConformance,
    EvaluatorConformance,
    PatchSamplerConformance,
)
from htd_core.testing.samples import real_tiles, synthetic_sample

__all__ = [
    "BackboneConformance",
    "ConditionBuilderConformance",
    "EncoderConformance",
    "EvaluatorConformance",
    "PatchSamplerConformance",
    "real_tiles",
    "synthetic_sample",
]
