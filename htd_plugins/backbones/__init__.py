"""Backbones: ``controlnet_ldm`` (the paper's) and ``concat_ldm``; their library is ``ldm/``.

Public names (submodules are internal):

- :class:`TokenEncoder`: the saved ``token_encoder`` part (learned null token / token
  projection), needed to drive a saved model from diffusers' own pipelines (docs/backbones.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TokenEncoder"]


def __getattr__(name: str) -> Any:  # lazy: importing a backbone plugin stays cheap
    if name == "TokenEncoder":
        from htd_plugins.backbones.ldm.modules import TokenEncoder

        return TokenEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
