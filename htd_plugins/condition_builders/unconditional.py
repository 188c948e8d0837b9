"""``unconditional``: the null condition (the unconditional baseline and CFG's null branch)."""

from __future__ import annotations

from htd_core import ClassMap, Condition, ConditionBuilder, TissueSample, hookimpl


class UnconditionalBuilder(ConditionBuilder):
    """No spatial channels, no tokens: backbones treat it as the null condition."""

    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        return ()

    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        return Condition()


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("unconditional", UnconditionalBuilder)
