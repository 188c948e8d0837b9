from __future__ import annotations

from htd_core.testing import ConditionBuilderConformance, synthetic_sample
from htd_plugins.condition_builders.unconditional import UnconditionalBuilder


class TestUnconditionalConformance(ConditionBuilderConformance):
    def make_builder(self):
        return UnconditionalBuilder()


def test_is_null_condition():
    assert UnconditionalBuilder().build(synthetic_sample(8)).is_null
