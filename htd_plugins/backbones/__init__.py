"""Backbones: ``controlnet_ldm`` (the paper's), ``concat_ldm`` and the training-free
``collage``; the latent models' library is ``ldm/``.

Public names (submodules are internal):

- :class:`TokenEncoder`: the saved ``token_encoder`` part (learned null token / token
  projection), needed to drive a saved model from diffusers' own pipelines (docs/backbones.md).
- autoencoders from a local folder (:mod:`.ldm.autoencoders`): :func:`load_autoencoder`
  (a KL autoencoder or TAEF2), :func:`autoencoder_kind`, :func:`calibrate` (latent statistics
  on training patches), :func:`folder_digest`.
- :class:`TrainOptions`: the latent backbones' ``fit`` options (validated on creation), so an
  application can check a run's training options before any work.
- :func:`get_preset`: a model-size preset (``tiny``, ``small``, ``paper``): architecture and
  training defaults.
"""

from __future__ import annotations

from typing import Any

_PUBLIC = {
    "TokenEncoder": "htd_plugins.backbones.ldm.modules",
    "load_autoencoder": "htd_plugins.backbones.ldm.autoencoders",
    "autoencoder_kind": "htd_plugins.backbones.ldm.autoencoders",
    "calibrate": "htd_plugins.backbones.ldm.autoencoders",
    "folder_digest": "htd_plugins.backbones.ldm.autoencoders",
    "TrainOptions": "htd_plugins.backbones.ldm.training",
    "get_preset": "htd_plugins.backbones.ldm.presets",
    "checkpoint_dir": "htd_plugins.backbones.ldm.checkpoint",
    "list_checkpoints": "htd_plugins.backbones.ldm.checkpoint",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:  # lazy: importing a backbone plugin stays cheap
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
