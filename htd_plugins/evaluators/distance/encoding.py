"""Encoders for evaluators: resolve them from the registry and embed mixed-size image lists.

Images of any size are accepted: each is resized by the encoder to its own ``input_size``
(bilinear, antialiased; :meth:`htd_core.Encoder.preprocess`). Batches are formed from images
of equal size, so a set mixing 224 px tiles and 512 px patches still embeds in batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_core.types import TissueSample

EncoderSpec = str | Mapping[str, Any] | Encoder


def encoder_spec_name(spec: EncoderSpec) -> str:
    """The display key of an encoder spec (before it is built)."""
    if isinstance(spec, Encoder):
        return spec.name
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and "name" in spec:
        return str(spec["name"])
    raise InputError(
        f"encoder {spec!r}: give a registered encoder name, a mapping with 'name' and options, "
        "or an Encoder instance"
    )


def build_encoder(spec: EncoderSpec, *, weights: str | None = None, device: str = "cpu") -> Encoder:
    """An Encoder from an instance, a registered name, or ``{"name": ..., **options}``.

    ``weights`` (when given) and ``device`` are passed when the encoder accepts them and the
    spec does not set them itself (``htd_core.config.resolve_component``).
    """
    if isinstance(spec, Encoder):
        return spec.to(device) if device != "cpu" else spec
    from htd_core.config import resolve_component
    from htd_core.plugins import get_registry

    name = encoder_spec_name(spec)
    defaults = {"device": device, **({"weights": weights} if weights is not None else {})}
    return resolve_component(spec, get_registry("encoders"), f"encoder {name!r}", defaults)


def embed_images(
    encoder: Encoder, images: Sequence[np.ndarray], batch_size: int = 32
) -> np.ndarray:
    """float32 features N x D of uint8 H x W x 3 images of any sizes, in input order.

    Raises:
        InputError: features holding NaN or inf (the encoder's call checks them, naming its
            weights file).
    """
    out = np.zeros((len(images), encoder.embed_dim), np.float32)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        by_size.setdefault(tuple(np.shape(img)), []).append(i)
    for idx in by_size.values():
        stack = np.stack([images[i] for i in idx])
        out[idx] = encoder(stack, batch_size=batch_size).numpy()
    return out


def sample_images(samples: Sequence[TissueSample] | None, what: str) -> list[np.ndarray]:
    """The images of ``samples``; a layout without an image is refused by name."""
    images = []
    for i, s in enumerate(samples or ()):
        if s.image is None:
            raise InputError(
                f"{what} sample {i} has no image (a layout): evaluators need image samples"
            )
        images.append(s.image)
    return images


def unique_keys(names: list[str]) -> list[str]:
    """Encoder names, suffixed ``#2``, ``#3`` when one is listed more than once."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out
