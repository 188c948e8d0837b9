"""Pipeline configuration: YAML files that name registered components.

A component is given as a name (``semantic_map``) or a mapping ``{name: crop, d_base: 80}``.
Errors name the file and the key (``pipeline.yaml: conditioners[1].d_bse: ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from htd_core.errors import ConfigError, RegistryError
from htd_core.registry import Registry, check_options, suggest

#: Top-level keys of a pipeline file: components, then per-stage options.
SECTIONS = ("sampler", "conditioners", "backbone", "evaluators", "fit", "generate", "evaluate")


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component's name, its options and where it was written."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    @classmethod
    def parse(cls, value: Any, where: str) -> ComponentSpec:
        if isinstance(value, str):
            return cls(value, {}, where)
        if isinstance(value, Mapping):
            if "name" not in value:
                raise ConfigError(
                    f"{where}: a component mapping needs a 'name' key, got {sorted(value)}"
                )
            options = {str(k): v for k, v in value.items() if k != "name"}
            return cls(str(value["name"]), options, where)
        raise ConfigError(
            f"{where}: expected a component name or a mapping with 'name', got {type(value).__name__}"
        )

    def create(self, registry: Registry) -> Any:
        """Instantiate from ``registry``; every failure names this spec's location."""
        try:
            entry = registry.entry(self.name)
        except RegistryError as exc:
            raise ConfigError(f"{self.where}.name: {exc}") from None
        try:
            check_options(entry.factory, self.options, f"{registry.kind} {self.name!r}")
        except RegistryError as exc:
            bad = next((k for k in self.options if f"option {k!r}" in str(exc)), "")
            raise ConfigError(f"{self.where}.{bad}: {exc}") from None
        try:
            return registry.create(self.name, **self.options)
        except RegistryError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None


def load_config(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Read a pipeline config (YAML path or mapping); returns (mapping, label for messages)."""
    if isinstance(source, Mapping):
        data, label = dict(source), "<config>"
    else:
        import yaml

        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {label} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{label}: not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{label}: the top level must be a mapping of sections {SECTIONS}")
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(
                f"{label}: unknown section {key!r}.{suggest(str(key), list(SECTIONS))} "
                f"Sections: {', '.join(SECTIONS)}"
            )
    for stage in ("fit", "generate", "evaluate"):
        if not isinstance(data.get(stage, {}), Mapping):
            raise ConfigError(f"{label}: {stage}: expected a mapping of options")
    return dict(data), label


def component_list(value: Any, where: str) -> list[ComponentSpec]:
    """A section holding one component or a list of them."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [ComponentSpec.parse(v, f"{where}[{i}]") for i, v in enumerate(items)]
