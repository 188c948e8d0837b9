"""``tiles``: samples from folders of image + mask pairs (GlaS, WSSS4LUAD, CAMELYON tiles).

Layout: ``root/images/<name>.<ext>`` and ``root/masks/<name>.<ext>`` matched by stem (read
through :mod:`htd_core.images`). Mask pixel values are class codes named by ``classes`` (list
in code order or ``{code: name}``); grey masks with lossy compression are binarised with
``threshold``. Known folders get their classes from :data:`TILE_SETS` (chosen by folder name
or ``preset``). Large tiles can be cut into patches that pass the same composition rule as
the slide samplers.

Ids are opaque (:func:`htd_core.images.opaque_id`): ``slide_id`` of the tile's *source* image
(:func:`htd_core.splits.source_id`: tiles ``testA_10_r0_c0`` ... ``testA_10_r1_c1`` share
one), ``tile_id`` of the tile file itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import ClassMap, PatchSampler, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.images import IMAGE_SUFFIXES, image_files, opaque_id, read_index_mask, read_rgb
from htd_core.splits import source_id
from htd_plugins.slides.composition import CompositionRule, fractions, window_counts

#: Classes (in mask-code order) and mask encodings of the real tile sets in ``../shared/data``
#: (see its README), chosen by folder name or ``preset``. ``threshold``: masks are lossy
#: greyscale, class 1 where value > threshold.
TILE_SETS: dict[str, dict[str, Any]] = {
    "glas": {"classes": ("non_gland", "gland"), "threshold": None},
    "wsss4luad_val": {
        "classes": ("tumor_epithelium", "tumor_stroma", "normal_lung", "background"),
        "threshold": None,
    },
    "camelyon_mini": {"classes": ("other", "tumor"), "threshold": 127},
}


@dataclass(kw_only=True, eq=False)
class TilesSampler(PatchSampler):
    """Image + mask pairs from a folder, whole or cut into patches.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        classes: class names per mask code (list in code order or ``{code: name}``; a name
            ``@ignore`` marks don't-care codes); default from ``preset``.
        preset: a key of :data:`TILE_SETS`; default: the folder's name when it is one.
        threshold: binarise grey masks (code = value > threshold), e.g. 127 for lossy JPEG.
        unknown_labels: mask codes that name no class: ``error`` or ``ignore``.
        patch_size: cut tiles into patches of this size (None: whole tiles).
        stride: step between cut patches (default ``patch_size``).
        rule: ``none`` (every tile/patch), ``heterogeneous`` or ``homogeneous`` (as the
            ``heterogeneous`` sampler, with min_frac, max_frac, min_classes, homogeneous_frac,
            min_labeled).
        mpp: resolution of the tiles, recorded in ``meta`` when known.
        limit: stop after this many samples.
    """

    root: str | Path
    classes: Sequence[str] | Mapping[Any, str] | None = None
    preset: str | None = None
    threshold: int | None = None
    unknown_labels: str = "error"
    images: str = "images"
    masks: str = "masks"
    patch_size: int | None = None
    stride: int | None = None
    rule: str = "none"
    min_frac: float = 0.2
    max_frac: float = 0.8
    min_classes: int = 2
    homogeneous_frac: float = 0.9
    min_labeled: float = 0.5
    mpp: float | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (self.root / self.images).is_dir():
            raise InputError(f"tile folder {self.root} has no '{self.images}/' folder of images")
        preset = self.preset or (self.root.name if self.root.name in TILE_SETS else None)
        if preset is not None and preset not in TILE_SETS:
            raise InputError(f"preset={preset!r}: known presets are {sorted(TILE_SETS)}")
        spec = TILE_SETS.get(preset, {}) if preset else {}
        classes = self.classes if self.classes is not None else spec.get("classes")
        if classes is None:
            raise InputError(
                f"tile folder {self.root}: give classes (names in mask-code order or "
                f"{{code: name}}), or a preset among {sorted(TILE_SETS)}"
            )
        if self.threshold is None:
            self.threshold = spec.get("threshold")
        codes = dict(classes.items()) if isinstance(classes, Mapping) else dict(enumerate(classes))
        self.code_names = {int(k): str(v) for k, v in codes.items()}
        names = [n for n in dict.fromkeys(self.code_names.values()) if n != "@ignore"]
        self._class_map = ClassMap(tuple(names))
        if self.unknown_labels not in ("error", "ignore"):
            raise InputError(f"unknown_labels={self.unknown_labels!r}: use 'error' or 'ignore'")
        if self.rule not in ("none", "heterogeneous", "homogeneous"):
            raise InputError(f"rule={self.rule!r}: use 'none', 'heterogeneous' or 'homogeneous'")
        self.composition_rule = (
            None
            if self.rule == "none"
            else CompositionRule(
                mode=self.rule,
                min_frac=self.min_frac,
                max_frac=self.max_frac,
                min_classes=self.min_classes,
                homogeneous_frac=self.homogeneous_frac,
                min_labeled=self.min_labeled,
            )
        )
        for name in ("patch_size", "stride", "limit"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InputError(f"{name}={value!r}: give a positive integer")
        if self.stride is not None and self.patch_size is None:
            raise InputError("stride is given without patch_size: stride applies to cut patches")
        self.pairs = self._pairs()

    @property
    def class_map(self) -> ClassMap:
        return self._class_map

    def _pairs(self) -> list[tuple[Path, Path]]:
        images = image_files(self.root / self.images)
        if not images:
            raise InputError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.root / self.images}"
            )
        if not (self.root / self.masks).is_dir():
            raise InputError(f"tile folder {self.root} has no '{self.masks}/' folder of masks")
        masks = {p.stem: p for p in image_files(self.root / self.masks)}
        missing = [p.name for p in images if p.stem not in masks]
        if missing:
            raise InputError(
                f"{len(missing)} image(s) in {self.root / self.images} have no mask of the same "
                f"name in {self.root / self.masks}, e.g. {missing[:3]}"
            )
        return [(p, masks[p.stem]) for p in images]

    def _lut(self, path: Path, codes: np.ndarray) -> np.ndarray:
        cm = self._class_map
        lut = np.full(max(int(codes.max()) + 1, 256), cm.ignore_index, np.int64)
        bad = []
        for code in np.unique(codes):
            name = self.code_names.get(int(code))
            if name in cm.names:
                lut[code] = cm.names.index(name)
            elif name != "@ignore" and int(code) != cm.ignore_index:
                bad.append(int(code))
        if bad and self.unknown_labels == "error":
            raise InputError(
                f"mask {path} has codes {bad} that map to no class ({self.code_names}): add them "
                "to classes, or set unknown_labels='ignore' (or threshold for grey masks)"
            )
        return lut

    def load(self, image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """uint8 H x W x 3 RGB image and uint8 H x W class-index mask of one pair.

        Raises:
            InputError: a file cannot be read, the sizes differ, or a code names no class.
        """
        image = read_rgb(image_path)
        raw = read_index_mask(mask_path)
        if raw.shape != image.shape[:2]:
            raise InputError(
                f"mask {mask_path} is {raw.shape[::-1]} but image {image_path} is {image.shape[1::-1]}"
            )
        codes = (
            (raw > self.threshold).astype(np.int64)
            if self.threshold is not None
            else raw.astype(np.int64)
        )
        return image, self._lut(mask_path, codes)[codes].astype(np.uint8)

    def __iter__(self) -> Iterator[TissueSample]:
        produced = 0
        for image_path, mask_path in self.pairs:
            image, mask = self.load(image_path, mask_path)
            meta = {
                "slide_id": opaque_id(source_id(image_path.name)),
                "tile_id": opaque_id(image_path),
                "level": 0,
            }
            if self.mpp is not None:
                meta["mpp"] = self.mpp
            for x, y, w, h in self._windows(mask):
                if self.limit is not None and produced >= self.limit:
                    return
                crop, sub = image[y : y + h, x : x + w], mask[y : y + h, x : x + w]
                info = {**meta, "x": x, "y": y, **({"patch_size": w} if w == h else {})}
                yield TissueSample(
                    np.ascontiguousarray(crop), np.ascontiguousarray(sub), self._class_map, info
                )
                produced += 1

    def _windows(self, mask: np.ndarray) -> list[tuple[int, int, int, int]]:
        """(x, y, width, height) of the whole tile or of its cut patches that pass the rule."""
        h, w = mask.shape
        k, rule = len(self._class_map), self.composition_rule
        if self.patch_size is None:
            if rule is not None:
                counts = np.bincount(mask[mask < k].astype(np.int64), minlength=k)[None, :k]
                if not rule.accept(*fractions(counts, h * w))[0]:
                    return []
            return [(0, 0, w, h)]
        size, stride = self.patch_size, self.stride or self.patch_size
        if size > min(h, w):
            return []
        ys, xs = np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        xy = np.stack([yy.ravel(), xx.ravel()], axis=1)
        if rule is not None:
            counts = window_counts(mask, k, xy, size, math.gcd(size, stride))
            xy = xy[rule.accept(*fractions(counts, size * size))]
        return [(int(c), int(r), size, size) for r, c in xy]


@hookimpl
def htd_register_patch_samplers(registry) -> None:
    registry.register("tiles", TilesSampler)
