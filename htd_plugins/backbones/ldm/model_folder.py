"""Model folders: one diffusers ``save_pretrained`` folder per component plus
``htd_config.json``, written into a temp folder that replaces the target in one rename
(:func:`htd_core.io.atomic_write_folder`), and read back part by part with diffusers'
``from_pretrained``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from htd_core.errors import InputError
from htd_core.io import atomic_write_folder

CONFIG_NAME = "htd_config.json"


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
    from htd_plugins.backbones.ldm.sampling import make_scheduler

    def write(tmp: Path) -> None:
        backbone.autoencoder.write_to(tmp / "vae")
        for name, part in backbone.denoiser.parts.items():
            part.save_pretrained(tmp / name)
        # the training noise schedule, as a diffusers pipeline folder needs one (DDIM: the
        # first sampler; a generation call chooses its own)
        make_scheduler("ddim", backbone.noise_config).save_pretrained(tmp / "scheduler")
        backbone.write_extra(tmp)
        atomic_write_json(tmp / CONFIG_NAME, {
            "format": 1, "backbone": backbone.name, "htd_version": __version__,
            "options": backbone.options, "components": ["vae", *backbone.denoiser.parts],
            "channels": list(backbone.channels), "token_names": list(backbone.token_names),
            "token_dim": backbone.token_dim, "history": backbone.history,
            "mpp": getattr(backbone, "mpp", None),
            "class_map": backbone.class_map.to_dict() if backbone.class_map else None,
        })  # fmt: skip

    atomic_write_folder(path, write, kind="model", legacy=(CONFIG_NAME,))


def load_model(cls: Any, path: str | Path, device: str | None = None) -> Any:
    """A ``cls`` backbone with the weights of model folder ``path`` (diffusers ``from_pretrained``
    per part).

    Folders saved before generation settings became call arguments hold ``guidance_scale``,
    ``scheduler``, ``num_inference_steps`` and ``batch_size`` among their options: those are
    not read (a warning says which differ from :class:`htd_core.GenerationOptions`' defaults,
    so the caller can pass them); a former ``vae`` option is the ``autoencoder`` option.
    """
    from htd_core.types import ClassMap
    from htd_plugins.backbones.ldm.autoencoders import load_autoencoder

    config = read_model_config(path, ("vae", *cls.part_names))
    if config.get("backbone") != cls.name:
        raise InputError(
            f"{path} holds a {config.get('backbone')!r} model, not {cls.name!r}: load it with that backbone"
        )
    options = legacy_options(config["options"], path)
    backbone = cls(**{**options, **({"device": device} if device else {})})
    backbone.autoencoder = load_autoencoder(Path(path) / "vae").frozen(backbone.device)
    names = [n for n in config["components"] if n != "vae"]
    parts = {n: backbone.part_class(n).from_pretrained(Path(path) / n) for n in names}
    backbone.denoiser = backbone.make_denoiser(parts).to(backbone.device).eval()
    backbone.channels, backbone.token_names = (
        tuple(config["channels"]),
        tuple(config["token_names"]),
    )
    backbone.token_dim, backbone.history = int(config["token_dim"]), list(config.get("history", []))
    backbone.mpp = config.get("mpp")  # um/px of the training patches (None: not recorded)
    backbone.class_map = (
        ClassMap.from_dict(config["class_map"]) if config.get("class_map") else None
    )
    return backbone


def legacy_options(options: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The constructor options of a saved folder, from the folder's (possibly older) record."""
    import warnings

    from htd_core.generation import GenerationOptions

    options = dict(options)
    if "vae" in options:
        options["autoencoder"] = options.pop("vae")
    defaults = GenerationOptions().to_dict()
    old = {k: options.pop(k) for k in ("guidance_scale", "scheduler", "num_inference_steps",
                                        "batch_size") if k in options}  # fmt: skip
    differ = {k: v for k, v in old.items() if v != defaults[k]}
    if differ:
        warnings.warn(
            f"model folder {path} was saved with generation settings {differ} among its "
            "options; htd no longer reads them from a model (generation settings are call "
            "arguments): pass them to generate (e.g. htd generate --guidance), or add them to "
            "the folder's pipeline.yaml as a `generate:` section",
            UserWarning,
            stacklevel=3,
        )
    return options
