"""The data that flows between stages: ClassMap, TissueSample and Condition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from htd_core.errors import InputError

#: Mask value of pixels that belong to no class (don't care): never trained on, never scored.
IGNORE_INDEX = 255

#: Key of the crops' provenance, in ``Condition.meta`` and in a generated sample's ``meta`` /
#: manifest column: ``{class name: {"slide_id", "x", "y", "size", "placed_x", "placed_y", ...}
#: or None}`` (what the ``crop`` builder records; the privacy audit reads it).
CROP_PROVENANCE = "crop_provenance"

#: Prefix of the class-index channel ``class_index:<K>``: per pixel the class index + 1 of a
#: K-class map (0: ignored pixel, or a dropped condition), as float32. A backbone replaces it by
#: a learned embedding of the class (``crop_slots``: a condition whose size does not grow with K).
CLASS_INDEX = "class_index"

# Tab10-like colours, readable on H&E thumbnails; cycled for larger class counts.
_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def class_names(values: Any, what: str) -> tuple[str, ...]:
    """``values`` (in mask-code order) as a class list: at least one non-empty name, each given
    once; THE rule of ``--classes``, samplers' ``classes`` and ``classes.json``.

    Raises:
        InputError: naming ``what`` (the option or file): an empty list, name or a duplicate.
    """
    names = tuple(str(n) for n in values)
    if not names:
        raise InputError(f"{what} is empty: give at least one tissue class name")
    if not all(n.strip() for n in names):
        raise InputError(f"{what} has an empty class name ({list(names)}): name every class")
    dup = [n for i, n in enumerate(names) if n in names[:i]]
    if dup:
        raise InputError(
            f"{what} names class {dup[0]!r} twice ({list(names)}): name each class once, in "
            "mask-code order"
        )
    return names


@dataclass(frozen=True)
class ClassMap:
    """Tissue class names, display colours and the "don't care" index of masks.

    Mask pixel value ``i`` means class ``names[i]``; ``ignore_index`` marks pixels that no
    loss, metric or condition should use (unannotated, or background when so chosen).
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        names = class_names(self.names, "ClassMap.names")
        object.__setattr__(self, "names", names)
        if 0 <= self.ignore_index < len(names):
            raise InputError(
                f"ClassMap.ignore_index={self.ignore_index} collides with class "
                f"{names[self.ignore_index]!r}: use a value >= {len(names)} (default 255)"
            )
        colors = tuple(tuple(int(v) for v in c) for c in self.colors) or tuple(
            _PALETTE[i % len(_PALETTE)] for i in range(len(names))
        )
        if len(colors) != len(names):
            raise InputError(
                f"ClassMap.colors has {len(colors)} entries for {len(names)} classes: give one "
                "RGB triple per class or none"
            )
        object.__setattr__(self, "colors", colors)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of class ``name``; an unknown name lists the known ones."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(f"unknown class {name!r}; classes are {list(self.names)}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "colors": [list(c) for c in self.colors],
            "ignore_index": self.ignore_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassMap:
        """Inverse of :meth:`to_dict` (the ``classes.json`` written beside datasets)."""
        if "names" not in data:
            raise InputError(
                "class map has no 'names' list (expected keys: names, colors, ignore_index)"
            )
        return cls(
            names=tuple(data["names"]),
            colors=tuple(tuple(c) for c in data.get("colors", ())),
            ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
        )

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """RGB uint8 rendering of an index mask (ignored pixels black)."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: len(self.colors)] = np.asarray(self.colors, np.uint8)
        return lut[np.clip(mask, 0, 255).astype(np.uint8)]

    def check_mask(self, mask: np.ndarray, what: str = "mask") -> None:
        """Raise when ``mask`` holds values that are neither a class nor the ignore index."""
        values = np.unique(mask)
        bad = [int(v) for v in values if v != self.ignore_index and not 0 <= v < len(self.names)]
        if bad:
            raise InputError(
                f"{what} contains class indices {bad} that the class list {list(self.names)} "
                f"does not define (valid: 0..{len(self.names) - 1} and ignore index "
                f"{self.ignore_index}); add the classes or map those codes to the ignore index"
            )


@dataclass
class TissueSample:
    """One training/evaluation patch: RGB image, class-index mask and provenance.

    A *layout* is a sample without an image (``image=None``): what generation starts from,
    a semantic map drawn by a user or taken from a real mask.

    Attributes:
        image: uint8 array H x W x 3, or None for a layout.
        mask: integer array H x W of class indices (``class_map.ignore_index`` = don't care).
        class_map: the classes the mask indexes.
        meta: opaque provenance: ``slide_id`` (never a patient identifier), ``x``, ``y``,
            ``mpp``, ``level``... Free-form but JSON-serialisable.
    """

    image: np.ndarray | None
    mask: np.ndarray
    class_map: ClassMap
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise InputError(f"TissueSample.mask must be H x W, got shape {mask.shape}")
        if self.image is None:
            self.mask = mask
            return
        image = np.asarray(self.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(
                f"TissueSample.image must be uint8 HxWx3, got {image.dtype} {image.shape}"
            )
        if mask.shape != image.shape[:2]:
            raise InputError(
                f"TissueSample.mask shape {mask.shape} does not match image {image.shape[:2]}"
            )
        if not np.issubdtype(mask.dtype, np.integer):
            raise InputError(f"TissueSample.mask must hold integers, got {mask.dtype}")
        self.image, self.mask = image, mask

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.mask.shape[0], self.mask.shape[1]

    def composition(self) -> dict[str, float]:
        """Fraction of non-ignored pixels per class name (classes absent from the mask: 0)."""
        k = len(self.class_map)
        valid = self.mask[self.mask != self.class_map.ignore_index]
        counts = np.bincount(valid.ravel().astype(np.int64), minlength=k)[:k]
        total = max(int(counts.sum()), 1)
        return {n: float(c) / total for n, c in zip(self.class_map.names, counts, strict=True)}


@dataclass(frozen=True)
class Condition:
    """What a backbone is conditioned on.

    Attributes:
        spatial: float tensor C x H x W at pixel resolution, or None.
        tokens: float tensor N x D for cross-attention, or None.
        channels: one name per spatial channel (``map:tumor``, ``crop:tumor:r``, ``valid:tumor``).
        token_names: one name per token (``embed:tumor``).
        meta: JSON-serialisable facts about how the condition was built, e.g. the crops'
            sources, sizes and positions under :data:`CROP_PROVENANCE`. Generators copy it
            into the generated sample's ``meta`` (and so into the dataset manifest).

    Conditions compose with ``+``: spatial channels and tokens are concatenated and ``meta``
    merged (a key both sides hold as mappings is merged per entry, the right side winning).
    The empty condition (nothing spatial, no tokens) is the null condition of classifier-free
    guidance.
    """

    spatial: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    channels: tuple[str, ...] = ()
    token_names: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "token_names", tuple(self.token_names))
        object.__setattr__(self, "meta", dict(self.meta))
        if self.spatial is None:
            if self.channels:
                raise InputError(
                    f"Condition names channels {self.channels} but has no spatial tensor"
                )
        else:
            if self.spatial.ndim != 3:
                raise InputError(
                    f"Condition.spatial must be C x H x W, got {tuple(self.spatial.shape)}"
                )
            if self.spatial.shape[0] != len(self.channels):
                raise InputError(
                    f"Condition.spatial has {self.spatial.shape[0]} channels but "
                    f"{len(self.channels)} channel names"
                )
        if self.tokens is None:
            if self.token_names:
                raise InputError("Condition names tokens but has no token tensor")
        else:
            if self.tokens.ndim != 2:
                raise InputError(f"Condition.tokens must be N x D, got {tuple(self.tokens.shape)}")
            if self.token_names and len(self.token_names) != self.tokens.shape[0]:
                raise InputError(
                    f"Condition has {self.tokens.shape[0]} tokens but {len(self.token_names)} token names"
                )

    @property
    def is_null(self) -> bool:
        return self.spatial is None and self.tokens is None

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    def __add__(self, other: Condition) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        return Condition(
            spatial=_cat([self.spatial, other.spatial], "spatial"),
            tokens=_cat([self.tokens, other.tokens], "tokens"),
            channels=self.channels + other.channels,
            token_names=self.token_names + other.token_names,
            meta=merge_meta(self.meta, other.meta),
        )

    def select(self, prefix: str) -> torch.Tensor:
        """Spatial channels whose names start with ``prefix`` (e.g. ``"map:"``)."""
        if self.spatial is None:
            raise InputError(f"condition has no spatial channels; asked for {prefix!r}")
        idx = [i for i, c in enumerate(self.channels) if c.startswith(prefix)]
        return self.spatial[idx]


def merge_meta(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """``left`` updated by ``right``; keys both hold as mappings are merged one level deep
    (per class, for :data:`CROP_PROVENANCE`), ``right``'s entries winning."""
    out = dict(left)
    for key, value in right.items():
        if isinstance(out.get(key), Mapping) and isinstance(value, Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _cat(parts: Sequence[torch.Tensor | None], what: str) -> torch.Tensor | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if what == "spatial" and len({tuple(p.shape[1:]) for p in present}) > 1:
        raise InputError(
            f"cannot concatenate conditions of different sizes {[tuple(p.shape) for p in present]}"
        )
    if what == "tokens" and len({p.shape[1] for p in present}) > 1:
        raise InputError(
            f"cannot concatenate tokens of different widths {[p.shape[1] for p in present]}; "
            "project them to a common dimension"
        )
    return torch.cat(present, dim=0)


def collate_conditions(
    conditions: Sequence[Condition],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Stack per-sample conditions into batch tensors (B x C x H x W, B x N x D).

    All conditions must share channel and token names (same builder, same class map).
    """
    if not conditions:
        raise InputError("no conditions to collate")
    first = conditions[0]
    for i, c in enumerate(conditions[1:], 1):
        if c.channels != first.channels or c.token_names != first.token_names:
            raise InputError(
                f"condition {i} has channels {c.channels[:4]}... unlike condition 0 "
                f"{first.channels[:4]}...: build a batch with one builder and one class map"
            )
    spatial = None if first.spatial is None else torch.stack([c.spatial for c in conditions])
    tokens = None if first.tokens is None else torch.stack([c.tokens for c in conditions])
    return spatial, tokens
