"""Pipeline files: a pipeline YAML (:meth:`htd_core.Pipeline.from_config`), and saved pipeline
folders, the backbone's model folder plus ``pipeline.yaml`` (the condition builders and
backbone by registered name, and the generation *defaults* under ``generate:``), read back by
:meth:`htd_core.Pipeline.from_pretrained`; and a folder's content id."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_core.config import ComponentSpec, component_list, load_config, resolve_component, spec_of
from htd_core.errors import ConfigError, InputError
from htd_core.generation import GenerationOptions

#: The file of a saved pipeline that names its components (a pipeline YAML itself).
PIPELINE_FILE = "pipeline.yaml"


def read_pipeline_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """``Pipeline(**parts)`` of a pipeline YAML file or mapping: the component specs of its
    ``sampler``, ``condition_builders``, ``backbone`` and ``evaluators`` sections and the
    stage options ``fit``, ``generate`` and ``evaluate``.

    Raises:
        ConfigError: naming the file and key of any unknown section or malformed component.
    """
    data, label = load_config(source)
    sampler, backbone = data.get("sampler"), data.get("backbone")
    return {
        "sampler": ComponentSpec.parse(sampler, f"{label}: sampler") if sampler else None,
        "condition_builders": component_list(
            data.get("condition_builders"), f"{label}: condition_builders"
        ),
        "backbone": ComponentSpec.parse(backbone, f"{label}: backbone") if backbone else None,
        "evaluators": component_list(data.get("evaluators"), f"{label}: evaluators"),
        "stage_options": {k: data[k] for k in ("fit", "generate", "evaluate") if k in data},
    }


def pipeline_file_text(
    backbone: Any, builder: Any, generate: Mapping[str, Any] | None = None
) -> str:
    """``pipeline.yaml`` of a pipeline: its backbone and condition builders by registered name
    and options, and its ``generate:`` defaults (validated).

    Raises:
        ConfigError: a component was built by hand (no registered name and options), an
            option YAML cannot hold (give paths, not objects), or a bad generation default.
    """
    import yaml

    parts = getattr(builder, "builders", [builder])
    data: dict[str, Any] = {
        "backbone": {"name": backbone.name},
        "condition_builders": [spec_of(b, "condition builder").to_config() for b in parts],
    }
    if generate:
        GenerationOptions.layered(generate, what="generate")
        data["generate"] = dict(generate)
    try:
        return yaml.safe_dump(data, sort_keys=False)
    except yaml.representer.RepresenterError as exc:
        raise ConfigError(
            f"cannot save the pipeline: a condition builder option is an object "
            f"({exc.args[-1]!r}); give it as a path or plain value"
        ) from None


def read_pipeline_folder(
    path: str | Path,
    *,
    condition_builders: Any = None,
    builder_options: Mapping[str, Any] | None = None,
    device: str | None = None,
    manager: Any,
) -> dict[str, Any]:
    """The parts of a saved pipeline (``Pipeline(**parts)``): the backbone loaded from the
    folder, its condition builders (``condition_builders`` overrides the saved ones) and
    its ``generate:`` defaults. See :meth:`htd_core.Pipeline.from_pretrained`.

    Raises:
        InputError: ``path`` is not a saved pipeline; ConfigError: unknown names in it.
    """
    path = Path(path)
    file = path / PIPELINE_FILE
    if not file.is_file():
        raise InputError(
            f"{path} is not a saved pipeline (no {PIPELINE_FILE}): give the model folder "
            "`htd train` or Pipeline.save_pretrained wrote"
        )
    data, label = load_config(file, relative_to_file=False)  # paths as saved
    backbone_spec = ComponentSpec.parse(data.get("backbone"), f"{label}: backbone")
    factory = resolve_factory(manager, "htd_register_backbones", backbone_spec)
    if not callable(getattr(factory, "load", None)):
        raise ConfigError(f"{label}: backbone {backbone_spec.name!r} has no load()")
    backbone = factory.load(path, device=device)
    specs = (
        component_list(data.get("condition_builders"), f"{label}: condition_builders")
        if condition_builders is None
        else (
            list(condition_builders)
            if isinstance(condition_builders, list | tuple)
            else [condition_builders]
        )
    )
    registry = manager.registry("htd_register_condition_builders")
    builders = [
        resolve_component(s, registry, f"{label}: condition_builders[{i}]", builder_options)
        for i, s in enumerate(specs)
    ]
    defaults = data.get("generate") or {}
    GenerationOptions.layered(defaults, what=f"{label}: generate")  # a bad file fails now
    return {"condition_builders": builders, "backbone": backbone, "manager": manager,
            "stage_options": {"generate": defaults} if defaults else None}  # fmt: skip


def pipeline_id(path: str | Path) -> str:
    """Content hash (SHA-256, 16 hex digits) of a saved pipeline folder: every file's path
    relative to the folder and its bytes (weights, configs, ``pipeline.yaml``), in name order;
    hidden files and the output marker are left out. The same model gives the same id wherever
    the folder lies; retrained or edited weights give another (``htd generate`` keys resumes on
    it, ``htd evaluate`` its cached reconstructions).

    Raises:
        InputError: ``path`` is not a saved pipeline folder.
    """
    import hashlib

    from htd_core.io import MARKER

    root = Path(path)
    if not (root / PIPELINE_FILE).is_file():
        raise InputError(f"{root} is not a saved pipeline (no {PIPELINE_FILE})")
    digest = hashlib.sha256()
    files = sorted(
        f for f in root.rglob("*")
        if f.is_file() and f.name != MARKER
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
    )  # fmt: skip
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def resolve_factory(manager: Any, hook: str, spec: ComponentSpec) -> Any:
    """The registered factory of ``spec.name`` (a ConfigError naming ``spec.where`` if none)."""
    from htd_core.errors import RegistryError

    try:
        return manager.registry(hook).entry(spec.name).factory
    except RegistryError as exc:
        raise ConfigError(f"{spec.where}{'.name' if spec.mapping else ''}: {exc}") from None
