"""Pipeline configuration: YAML files that name registered components.

A component is given as a name (``semantic_map``) or a mapping ``{name: crop, d_base: 80}``.
Errors name the file and the key (``pipeline.yaml: condition_builders[1].d_bse: ...``).

Paths in a YAML file work from any folder (:func:`resolve_paths`): ``${NAME}`` is the
environment variable NAME (``${HTD_SHARED_DATA}`` defaults to the shared data folder htd finds,
:func:`htd_core.data.shared_data_dir`), and a component option that starts with ``./`` or
``../`` is relative to the YAML file's folder. Other relative paths (``fit.output_dir: runs/x``)
stay relative to the current folder, where outputs go.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from htd_core.errors import ConfigError, RegistryError
from htd_core.registry import (
    SPEC_ATTRIBUTE,
    Registry,
    accepted_subset,
    check_options,
    suggest,
)

#: Top-level keys of a pipeline file: components, then per-stage options.
SECTIONS = (
    "sampler",
    "condition_builders",
    "backbone",
    "evaluators",
    "fit",
    "generate",
    "evaluate",
)
#: Old section names and what they are called now.
RENAMED = {"conditioners": "condition_builders"}
#: Sections whose ``./`` and ``../`` option values are inputs relative to the YAML file.
COMPONENT_SECTIONS = ("sampler", "condition_builders", "backbone", "evaluators")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component's name, its options and where it was written."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""
    #: written as a mapping (``{name: ..., ...}``): its name is the key ``name`` of ``where``
    mapping: bool = False

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
            return cls(str(value["name"]), options, where, mapping=True)
        raise ConfigError(
            f"{where}: expected a component name or a mapping with 'name', got {type(value).__name__}"
        )

    def create(self, registry: Registry, defaults: Mapping[str, Any] | None = None) -> Any:
        """Instantiate from ``registry``; every failure names this spec's location.

        ``defaults`` are options given only when the factory accepts them and the spec does
        not set them itself (run-wide settings such as ``device`` or a crop ``bank``).
        """
        try:
            entry = registry.entry(self.name)
        except RegistryError as exc:
            raise ConfigError(f"{self.where}{'.name' if self.mapping else ''}: {exc}") from None
        try:
            check_options(entry.factory, self.options, f"{registry.kind} {self.name!r}")
        except RegistryError as exc:
            bad = next((k for k in self.options if f"option {k!r}" in str(exc)), "")
            raise ConfigError(f"{self.where}.{bad}: {exc}") from None
        options = {**accepted_subset(entry.factory, defaults or {}), **self.options}
        try:
            return registry.create(self.name, **options)
        except RegistryError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None

    def to_config(self) -> dict[str, Any]:
        """The YAML/JSON form: ``{"name": ..., **options}``."""
        return {"name": self.name, **self.options}


def spec_of(component: Any, what: str) -> ComponentSpec:
    """The spec a component was created from; refuses components built by hand.

    Raises:
        ConfigError: ``component`` was not created from a registered name (its options are
            unknown, so it cannot be saved and re-created).
    """
    spec = getattr(component, SPEC_ATTRIBUTE, None)
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(
            f"{what} {type(component).__name__} was not created from a registered name, so its "
            "options are unknown: create it with htd_core.create(kind, name, **options) or give "
            "the pipeline its name"
        )
    return ComponentSpec.parse(spec, what)


def resolve_component(
    value: Any,
    registry: Registry,
    where: str,
    defaults: Mapping[str, Any] | None = None,
) -> Any:
    """The one resolver of "an instance, a registered name, or ``{name: ..., **options}``".

    Args:
        value: an instance of ``registry.base`` (returned as is), a name, a mapping with
            ``name``, or a :class:`ComponentSpec`.
        registry: the registry of the component's kind.
        where: location for messages (``"pipeline.yaml: condition_builders[1]"``).
        defaults: options passed only when the factory accepts them and ``value`` does not set
            them (see :meth:`ComponentSpec.create`).

    Raises:
        ConfigError: unknown name or option, or a value of the wrong type (names ``where``).
    """
    if isinstance(value, registry.base):
        return value
    spec = value if isinstance(value, ComponentSpec) else ComponentSpec.parse(value, where)
    return spec.create(registry, defaults)


def resolve_paths(value: Any, base: Path | None, where: str) -> Any:
    """``value`` with ``${NAME}`` replaced by environment variables and, when ``base`` is given,
    strings starting with ``./`` or ``../`` made relative to ``base`` (lists and mappings are
    walked).

    ``${HTD_SHARED_DATA}`` defaults to :func:`htd_core.data.shared_data_dir`.

    Raises:
        ConfigError: a variable that is not set (naming ``where``), or no shared data folder.
    """
    if isinstance(value, Mapping):
        return {k: resolve_paths(v, base, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_paths(v, base, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    text = _VARIABLE.sub(lambda m: _variable(m.group(1), where), value)
    if base is not None and text.startswith(("./", "../")):
        text = os.path.normpath(base / text)
    return text


def _variable(name: str, where: str) -> str:
    from htd_core.data import ENV_VAR, shared_data_dir

    if os.environ.get(name):
        return os.environ[name]
    if name == ENV_VAR:
        folder = shared_data_dir()
        if folder is None:
            raise ConfigError(
                f"{where}: ${{{ENV_VAR}}} is not set and no shared data folder was found "
                f"(../shared/data beside the repository): set {ENV_VAR} to the folder that "
                "holds glas/, slides/, ..."
            )
        return str(folder)
    raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")


def read_yaml_mapping(path: str | Path, what: str, expected: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file.

    Raises:
        ConfigError: the file is missing (``what`` names it), is not YAML, or its top level is
            not a mapping (``expected`` says of what).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of {expected}")
    return dict(data)


def load_config(
    source: str | Path | Mapping[str, Any], *, relative_to_file: bool = True
) -> tuple[dict[str, Any], str]:
    """Read a pipeline config (YAML path or mapping); returns (mapping, label for messages).

    ``${NAME}`` variables are expanded; with ``relative_to_file`` (a YAML path only), the
    components' ``./`` and ``../`` options are made relative to the file (:func:`resolve_paths`).
    """
    if isinstance(source, Mapping):
        data, label = dict(source), "<config>"
    else:
        data, label = read_yaml_mapping(source, "config file", f"sections {SECTIONS}"), str(source)
    for key in data:
        if key in RENAMED:
            raise ConfigError(
                f"{label}: section {key!r} is now called {RENAMED[key]!r}: rename it (one name, "
                "'condition builder', is used in code, YAML and docs)"
            )
        if key not in SECTIONS:
            raise ConfigError(
                f"{label}: unknown section {key!r}.{suggest(str(key), list(SECTIONS))} "
                f"Sections: {', '.join(SECTIONS)}"
            )
    for stage in ("fit", "generate", "evaluate"):
        if not isinstance(data.get(stage, {}), Mapping):
            raise ConfigError(f"{label}: {stage}: expected a mapping of options")
    folder = Path(source).parent if relative_to_file and not isinstance(source, Mapping) else None
    data = {
        key: resolve_paths(value, folder if key in COMPONENT_SECTIONS else None, f"{label}: {key}")
        for key, value in data.items()
    }
    return data, label


def component_list(value: Any, where: str) -> list[ComponentSpec]:
    """A section holding one component or a list of them."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [ComponentSpec.parse(v, f"{where}[{i}]") for i, v in enumerate(items)]


def parse_options(pairs: list[str], config: str | None) -> dict[str, Any]:
    """Options from a YAML mapping file (its paths resolved as in :func:`resolve_paths`), then
    ``KEY=VALUE`` pairs (``-o`` on the CLI) whose VALUE is read as YAML; later pairs override.
    Raises :class:`ConfigError` naming the pair."""
    import yaml

    options: dict[str, Any] = {}
    if config:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file {config} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{config}: expected a mapping of options, got {type(data).__name__}")
        options.update(resolve_paths(data, path.parent, str(config)))
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-o {pair!r}: write options as KEY=VALUE (e.g. -o patch_size=256)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"-o {pair!r}: VALUE is not valid YAML ({exc})") from None
        options[key.strip()] = _number(value)
    return options


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-9`` as a string; read numeric strings as numbers."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value
