"""``embedding``: the paper's embedding-conditioned baseline.

Each class present in the sample gets one crop (chosen exactly as the ``crop`` builder does:
from the image, a :class:`CropBank` or explicit crops), embedded by a registered foundation
model encoder; the K embeddings are the condition's tokens for cross-attention, in class
order, with an all-zero token for classes absent from the sample (or whose region holds no
crop). Compose ``semantic_map + embedding`` to give the layout as well.

The encoder runs once per distinct crop: a training run draws crops from a fixed crop bank
(or the training images) at every step, so most crops recur; each crop's embedding is kept
in memory, keyed by the crop's pixels (a BLAKE2b digest of its bytes and its shape), and the
crops of a sample not seen yet are embedded in one batch. A cached embedding is the one the
encoder computed for those pixels (up to the float rounding of the batch it was computed in):
the condition does not change.

The crop builder trims a drawn crop to the square its class region holds (its centre, 8 to 32
px at 64 px), so one bank entry gives many distinct squares and the cache rarely hits: the
encoder then runs on nearly every crop of every training step. ``whole_crop=True`` embeds the
drawn crop itself (the bank entry or explicit crop, whole) instead: the same draw, more of the
same tissue, and each entry embedded once however often it is drawn (the experiment's
``embedding`` arm; docs/results.md gives its speed and FD against the placed squares).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core import ClassMap, Condition, ConditionBuilder, Encoder, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.types import CROP_PROVENANCE
from htd_plugins.condition_builders.crops.bank import CropBank
from htd_plugins.condition_builders.crops.inner import inner_cropper
from htd_plugins.condition_builders.crops.provenance import CropChoice, crop_provenance


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
        cache_size: distinct crop embeddings kept in memory (least recently used dropped
            first; ``embed_dim`` float32 each: 20000 x 1280 is 100 MB); 0 embeds every crop
            every time.
        whole_crop: embed each drawn bank or explicit crop whole (as stored, any size) rather
            than the square placed from it (see the module docstring); a crop cut from the
            sample itself is embedded as placed either way. The tokens still say nothing of
            where a crop sits, so only what the encoder sees changes.

    Raises:
        InputError: an unknown encoder or option, a negative ``cache_size``.
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
        cache_size: int = 20000,
        whole_crop: bool = False,
    ) -> None:
        from htd_core.options import check_int

        check_int(cache_size, "embedding: cache_size", 0)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.cropper = inner_cropper("embedding", crop_options, bank, classes, seed)
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
        self.whole_crop = bool(whole_crop)
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
            classes = [sample.class_map.names[i] for i in placed]
            pixels = [self.pixels(c, n) for c, n in zip(placed.values(), classes, strict=True)]
            feats = self.embed(pixels)
            enc.check_finite(feats, f"crops (classes {classes})")
            if self.normalize:
                feats = torch.nn.functional.normalize(feats, dim=1)
            tokens[list(placed)] = feats.clone()
        return Condition(
            tokens=tokens,
            token_names=names,
            meta={CROP_PROVENANCE: crop_provenance(sample.class_map, choices)},
        )

    def pixels(self, choice: CropChoice, class_name: str) -> np.ndarray:
        """What the encoder sees of a placed crop (uint8 H x W x 3): its placed square, or with
        ``whole_crop`` the bank entry or explicit crop it was drawn from, whole."""
        p = choice.provenance
        if self.whole_crop and p.get("source") == "bank" and "bank_index" in p:
            return np.asarray(self.cropper.bank.crops(class_name)[int(p["bank_index"])].image)
        if self.whole_crop and p.get("source") == "explicit":
            return np.asarray(self.cropper.crops[class_name])
        return choice.image

    def embed(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """Encoder features of ``crops`` (uint8 H x W x 3 each): float32 N x ``embed_dim``,
        before normalisation; the crops not in the cache are embedded in one batch."""
        keys = [_crop_key(c) for c in crops]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        fresh: dict[bytes, torch.Tensor] = {}
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            enc = self.encoder
            with torch.inference_mode():
                pixels = torch.cat([enc.preprocess(crops[first[k]]) for k in missing])
                out = enc.forward(pixels).float().cpu()
            fresh = {k: row.clone() for k, row in zip(missing, out, strict=True)}
        rows = []
        for k in keys:
            if k in fresh:
                rows.append(fresh[k])
            else:
                self._cache.move_to_end(k)
                rows.append(self._cache[k])
        if self.cache_size:
            for k, row in fresh.items():
                self._cache[k] = row
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack(rows)

    def __repr__(self) -> str:
        whole = ", whole_crop=True" if self.whole_crop else ""
        return f"EmbeddingBuilder(encoder={self.encoder.label!r}{whole})"


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("embedding", EmbeddingBuilder)


def _crop_key(crop: np.ndarray) -> bytes:
    """The cache key of a crop: its shape, dtype and a BLAKE2b digest of its pixels."""
    a = np.ascontiguousarray(crop)
    head = f"{a.shape}{a.dtype}".encode()
    return head + hashlib.blake2b(a.tobytes(), digest_size=16).digest()
