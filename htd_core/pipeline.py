"""Pipeline: sampler -> condition builder(s) -> backbone -> evaluators, composed in Python
or from a YAML file of registered names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from htd_core.config import ComponentSpec, component_list, load_config
from htd_core.errors import ConfigError
from htd_core.interfaces import (
    Backbone,
    ComposedConditionBuilder,
    ConditionBuilder,
    Evaluator,
    PatchSampler,
)
from htd_core.plugins import PluginManager, get_plugin_manager
from htd_core.types import Condition, TissueSample

Component = Any  # an instance, a registered name, or {"name": ..., **options}


class Pipeline:
    """The stages of the method, each given as an object or by registered name.

    Example:
        >>> Pipeline(sampler="tiles", conditioners=["semantic_map", "crop"], backbone="controlnet_ldm")
    """

    def __init__(
        self,
        sampler: Component | None = None,
        conditioners: Component | Sequence[Component] = (),
        backbone: Component | None = None,
        evaluators: Component | Sequence[Component] = (),
        *,
        stage_options: Mapping[str, Mapping[str, Any]] | None = None,
        manager: PluginManager | None = None,
    ) -> None:
        self.manager = manager or get_plugin_manager()
        self.sampler = self._resolve(sampler, "patch_samplers", PatchSampler, "sampler")
        builders = [
            self._resolve(c, "condition_builders", ConditionBuilder, f"conditioners[{i}]")
            for i, c in enumerate(_as_list(conditioners))
        ]
        self.condition_builder: ConditionBuilder | None = (
            builders[0]
            if len(builders) == 1
            else ComposedConditionBuilder(builders)
            if builders
            else None
        )
        self.backbone = self._resolve(backbone, "backbones", Backbone, "backbone")
        self.evaluators = [
            self._resolve(e, "evaluators", Evaluator, f"evaluators[{i}]")
            for i, e in enumerate(_as_list(evaluators))
        ]
        self.stage_options = {k: dict(v) for k, v in (stage_options or {}).items()}

    @classmethod
    def from_config(
        cls, source: str | Path | Mapping[str, Any], manager: PluginManager | None = None
    ) -> Pipeline:
        """Build from a YAML file or mapping with sections ``sampler``, ``conditioners``,
        ``backbone``, ``evaluators`` and stage options ``fit``, ``generate``, ``evaluate``."""
        data, label = load_config(source)
        sampler = data.get("sampler")
        backbone = data.get("backbone")
        return cls(
            sampler=ComponentSpec.parse(sampler, f"{label}: sampler") if sampler else None,
            conditioners=component_list(data.get("conditioners"), f"{label}: conditioners"),
            backbone=ComponentSpec.parse(backbone, f"{label}: backbone") if backbone else None,
            evaluators=component_list(data.get("evaluators"), f"{label}: evaluators"),
            stage_options={k: data[k] for k in ("fit", "generate", "evaluate") if k in data},
            manager=manager,
        )

    def _resolve(self, value: Component | None, kind: str, base: type, where: str) -> Any:
        if value is None or isinstance(value, base):
            return value
        registry = self.manager.registry(f"htd_register_{kind}")
        spec = value if isinstance(value, ComponentSpec) else ComponentSpec.parse(value, where)
        return spec.create(registry)

    def _need(self, attr: str, stage: str) -> Any:
        value = getattr(self, attr)
        if value is None:
            raise ConfigError(
                f"pipeline stage {stage!r} needs a {attr.replace('_', ' ')}; none was given"
            )
        return value

    # -- stages -------------------------------------------------------------------------
    def samples(self, limit: int | None = None) -> Iterable[TissueSample]:
        sampler: PatchSampler = self._need("sampler", "samples")
        return sampler.take(limit) if limit is not None else iter(sampler)

    def build_conditions(self, samples: Iterable[TissueSample], seed: int = 0) -> list[Condition]:
        builder: ConditionBuilder = self._need("condition_builder", "build_conditions")
        return [builder.build(s, seed=seed + i) for i, s in enumerate(samples)]

    def fit(self, **options: Any) -> dict[str, Any]:
        """Train the backbone on the sampler's samples with the composed condition."""
        backbone: Backbone = self._need("backbone", "fit")
        builder = self._need("condition_builder", "fit")
        sampler = self._need("sampler", "fit")
        return backbone.fit(sampler, builder, **{**self.stage_options.get("fit", {}), **options})

    def generate(
        self, layouts: Sequence[TissueSample], seed: int = 0, **options: Any
    ) -> list[TissueSample]:
        """Synthesize one image per layout (a mask, optionally with crops' source image)."""
        backbone: Backbone = self._need("backbone", "generate")
        conditions = self.build_conditions(layouts, seed=seed)
        images = backbone.generate(
            conditions, seed=seed, **{**self.stage_options.get("generate", {}), **options}
        )
        return [
            TissueSample(img, lay.mask, lay.class_map, {**lay.meta, "synthetic": True})
            for img, lay in zip(images, layouts, strict=True)
        ]

    def evaluate(
        self, real: Sequence[TissueSample], synthetic: Sequence[TissueSample]
    ) -> dict[str, dict[str, Any]]:
        """Each evaluator's metrics, keyed by evaluator name."""
        if not self.evaluators:
            raise ConfigError("pipeline stage 'evaluate' needs at least one evaluator")
        results: dict[str, dict[str, Any]] = {}
        for ev in self.evaluators:
            results[ev.name] = ev.evaluate(real, synthetic)
        return results


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]
