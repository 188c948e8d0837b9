"""htd plugin: any timm architecture + a local weights file as an htd encoder, from TOML.

Each ``[encoders.<name>]`` table of the file named by ``$HTD_TIMM_ENCODERS`` (default
``~/.config/htd/timm_encoders.toml``) becomes an encoder usable everywhere htd takes one
(discovery, the embedding baseline, Frechet distances)::

    [encoders.hoptimus0]
    arch = "vit_giant_patch14_reg4_dinov2"       # any timm.list_models() name
    weights = "/models/h-optimus-0.safetensors"  # relative paths: to this file
    input_size = 224
    mean = [0.707223, 0.578729, 0.703617]
    std = [0.211883, 0.230117, 0.177517]
    summary = "H-optimus-0 pathology ViT-g/14"
    model_kwargs = { init_values = 1e-5, dynamic_img_size = false }
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_plugins.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TimmEncoder,
    TimmSpec,
    make_encoder_class,
)

CONFIG_ENV = "HTD_TIMM_ENCODERS"
DEFAULT_CONFIG = Path("~/.config/htd/timm_encoders.toml")
KEYS = {"arch", "weights", "input_size", "mean", "std", "summary", "model_kwargs"}


def config_path() -> Path | None:
    """The TOML file to read: ``$HTD_TIMM_ENCODERS``, else the default path if it exists."""
    if os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV]).expanduser()
        if not path.is_file():
            raise InputError(f"{CONFIG_ENV}={path} does not exist")
        return path
    default = DEFAULT_CONFIG.expanduser()
    return default if default.is_file() else None


def encoder_classes(path: str | Path) -> dict[str, type[TimmEncoder]]:
    """One TimmEncoder subclass per ``[encoders.<name>]`` table of ``path``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text()).get("encoders", {})
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML: {exc}") from exc
    return {name: _encoder_class(name, dict(entry), path) for name, entry in tables.items()}


def _encoder_class(name: str, entry: dict[str, Any], path: Path) -> type[TimmEncoder]:
    unknown = sorted(set(entry) - KEYS)
    if unknown or "arch" not in entry:
        raise InputError(
            f"{path}: [encoders.{name}] "
            + (f"has unknown keys {unknown}" if unknown else "needs arch = '<timm model name>'")
            + f"; keys are {sorted(KEYS)}"
        )
    default_weights = entry.get("weights")
    if default_weights and not Path(default_weights).expanduser().is_absolute():
        default_weights = str(path.parent / default_weights)
    spec = TimmSpec(
        arch=str(entry["arch"]),
        model_kwargs=dict(entry.get("model_kwargs", {})),
        input_size=int(entry.get("input_size", 224)),
        mean=tuple(entry.get("mean", IMAGENET_MEAN)),
        std=tuple(entry.get("std", IMAGENET_STD)),
        weights_hint=f"its weights file (or set weights = in [encoders.{name}] of {path})",
        default_weights=default_weights,
    )
    summary = entry.get("summary") or f"{spec.arch} from {path.name}"
    return make_encoder_class(name, spec, summary, module=__name__)


@hookimpl
def htd_register_encoders(registry) -> None:
    path = config_path()
    for name, cls in (encoder_classes(path) if path else {}).items():
        registry.register(name, cls)
