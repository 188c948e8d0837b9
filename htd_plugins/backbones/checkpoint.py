"""Checkpoints and model folders, written so that a kill never leaves half a file.

- Training checkpoints: ``<output>/checkpoints/step-00000100.pt`` (one ``torch.save`` file,
  written to a temp file and renamed; loaded with ``weights_only=True``), the last few kept.
- Model folders: one diffusers ``save_pretrained`` folder per component plus
  ``htd_config.json``, written into a temp folder that replaces the target in one rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from htd_core.errors import InputError
from htd_core.io import atomic_save_torch

CONFIG_NAME = "htd_config.json"
_CKPT_GLOB = "step-*.pt"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(
    output_dir: str | Path, step: int, state: Mapping[str, Any], keep_last: int = 2
) -> Path:
    """Write ``state`` as the checkpoint of ``step`` and delete all but the last ``keep_last``."""
    folder = checkpoint_dir(output_dir)
    path = folder / f"step-{step:08d}.pt"
    atomic_save_torch(path, dict(state))
    for old in list_checkpoints(output_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint files of ``output_dir``, oldest first."""
    folder = checkpoint_dir(output_dir)
    return sorted(folder.glob(_CKPT_GLOB)) if folder.is_dir() else []


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain containers only: ``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise InputError(
            f"checkpoint {path} cannot be read ({exc}); delete it to resume from the one before"
        ) from None


def config_diff(
    saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """``key: saved -> current`` for every key whose value differs (``ignore`` skipped)."""
    skip = set(ignore)
    keys = sorted((set(saved) | set(current)) - skip)
    return [
        f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
        for k in keys
        if _jsonable(saved.get(k)) != _jsonable(current.get(k))
    ]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_model_folder(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a fresh temp folder, then swap it into ``path`` atomically.

    A crash while writing leaves the previous folder (if any) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_model_config(path: str | Path, components: Iterable[str] = ()) -> dict[str, Any]:
    """``htd_config.json`` of a model folder, after checking every component folder is there."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise InputError(
            f"{path} is not an htd model folder (no {CONFIG_NAME}); give the folder written by "
            "`htd train` or Backbone.save"
        )
    config = json.loads(config_path.read_text())
    missing = [
        c
        for c in (*components, *config.get("components", ()))
        if not (path / c / "config.json").is_file()
    ]
    if missing:
        raise InputError(
            f"model folder {path} is missing component(s) {sorted(set(missing))} (each needs "
            "<component>/config.json and its weights): copy the whole folder, or re-save the model"
        )
    return config


def save_model(backbone: Any, path: str | Path) -> None:
    """Write a backbone's model folder (see :meth:`LatentDiffusionBackbone.save`)."""
    from htd_core import __version__
    from htd_core.io import atomic_write_json
    from htd_plugins.backbones.sampling import make_scheduler

    def write(tmp: Path) -> None:
        backbone.vae.save_pretrained(tmp / "vae")
        for name, part in backbone.denoiser.parts.items():
            part.save_pretrained(tmp / name)
        make_scheduler(backbone.options["scheduler"], backbone.noise_config).save_pretrained(
            tmp / "scheduler"
        )
        backbone.write_extra(tmp)
        atomic_write_json(tmp / CONFIG_NAME, {
            "format": 1, "backbone": backbone.name, "htd_version": __version__,
            "options": backbone.options, "components": ["vae", *backbone.denoiser.parts],
            "channels": list(backbone.channels), "token_names": list(backbone.token_names),
            "token_dim": backbone.token_dim, "history": backbone.history,
            "class_map": backbone.class_map.to_dict() if backbone.class_map else None,
        })  # fmt: skip

    write_model_folder(path, write)


def load_model(cls: Any, path: str | Path, device: str | None = None) -> Any:
    """A ``cls`` backbone with the weights of model folder ``path`` (diffusers ``from_pretrained``
    per part)."""
    from htd_core.types import ClassMap
    from htd_plugins.backbones.autoencoder import load_vae

    config = read_model_config(path, ("vae", *cls.part_names))
    if config.get("backbone") != cls.name:
        raise InputError(
            f"{path} holds a {config.get('backbone')!r} model, not {cls.name!r}: load it with that backbone"
        )
    backbone = cls(**{**config["options"], **({"device": device} if device else {})})
    backbone.vae = load_vae(Path(path) / "vae").to(backbone.device).eval()
    names = [n for n in config["components"] if n != "vae"]
    parts = {n: backbone.part_class(n).from_pretrained(Path(path) / n) for n in names}
    backbone.denoiser = backbone.make_denoiser(parts).to(backbone.device).eval()
    backbone.channels, backbone.token_names = (
        tuple(config["channels"]),
        tuple(config["token_names"]),
    )
    backbone.token_dim, backbone.history = int(config["token_dim"]), list(config.get("history", []))
    backbone.class_map = (
        ClassMap.from_dict(config["class_map"]) if config.get("class_map") else None
    )
    return backbone
