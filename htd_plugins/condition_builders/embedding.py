"""``embedding``: the paper's embedding-conditioned baseline.

Each class present in the sample gets one crop (chosen exactly as the ``crop`` builder does:
from the image, a :class:`CropBank` or explicit crops), embedded by a registered foundation
model encoder; the K embeddings are the condition's tokens for cross-attention, in class
order, with an all-zero token for classes absent from the sample (or whose region holds no
crop). Compose ``semantic_map + embedding`` to give the layout as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from htd_core import ClassMap, Condition, ConditionBuilder, Encoder, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.types import CROP_PROVENANCE
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.crops.bank import CropBank
from htd_plugins.condition_builders.crops.provenance import crop_provenance


class EmbeddingBuilder(ConditionBuilder):
    """Per-class crop embeddings as K tokens ``embed:<class>`` (zero token when absent).

    Args:
        encoder: a registered encoder name or an :class:`~htd_core.Encoder` instance.
        encoder_options: options of the named encoder (``{"weights": "/path/uni.bin"}``).
        crop_options: options of the :class:`CropBuilder` that picks the crops (``crops``,
            ``d_base``, ``min_inside``...). Its ``placement`` does not change the tokens (they
            carry no position), only the provenance's ``placed_x``, ``placed_y``.
        bank: a :class:`CropBank` or the path of a saved one, for layouts without an image;
            given to the cropper (over any ``crop_options["bank"]``). ``htd generate
            --crop-bank`` passes it, as to every builder that takes ``bank``.
        normalize: L2-normalise each token (foundation-model features differ in scale).
        classes: expected class names; a sample with another class list is refused.
        seed: used when ``build`` gets ``seed=None``.
    """

    def __init__(
        self,
        encoder: str | Encoder = "vit_small",
        encoder_options: Mapping[str, Any] | None = None,
        crop_options: Mapping[str, Any] | None = None,
        bank: CropBank | str | Path | None = None,
        normalize: bool = False,
        classes: list[str] | tuple[str, ...] | None = None,
        seed: int = 0,
    ) -> None:
        crop_options = dict(crop_options or {})
        for key in ("classes", "seed"):
            if key in crop_options:
                raise InputError(f"embedding: give {key}= to the builder, not in crop_options")
        if bank is not None:
            crop_options["bank"] = bank
        self.cropper = CropBuilder(**crop_options, classes=classes, seed=seed)
        if isinstance(encoder, Encoder):
            if encoder_options:
                raise InputError("embedding: encoder_options apply to an encoder given by name")
            self.encoder = encoder
        elif isinstance(encoder, str):
            import htd_core

            self.encoder = htd_core.create("encoders", encoder, **dict(encoder_options or {}))
        else:
            raise InputError(
                f"embedding: encoder must be a registered name or an Encoder, got "
                f"{type(encoder).__name__}"
            )
        self.normalize = bool(normalize)
        self.token_dim = int(self.encoder.embed_dim)

    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        self.cropper.check_classes(class_map)
        return ()

    def token_names(self, class_map: ClassMap) -> tuple[str, ...]:
        self.cropper.check_classes(class_map)
        return tuple(f"embed:{n}" for n in class_map.names)

    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        names = self.token_names(sample.class_map)
        choices = self.cropper.select(sample, seed)
        placed = {i: c for i, c in choices.items() if c is not None and c.placed}
        tokens = torch.zeros((len(names), self.token_dim), dtype=torch.float32)
        if placed:
            enc = self.encoder
            with torch.inference_mode():
                pixels = torch.cat([enc.preprocess(c.image) for c in placed.values()])
                feats = enc.forward(pixels).float().cpu()
            classes = [sample.class_map.names[i] for i in placed]
            enc.check_finite(feats, f"crops (classes {classes})")
            if self.normalize:
                feats = torch.nn.functional.normalize(feats, dim=1)
            tokens[list(placed)] = feats.clone()
        return Condition(
            tokens=tokens,
            token_names=names,
            meta={CROP_PROVENANCE: crop_provenance(sample.class_map, choices)},
        )

    def __repr__(self) -> str:
        return f"EmbeddingBuilder(encoder={self.encoder.label!r})"


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("embedding", EmbeddingBuilder)
