"""``tiles``: samples from folders of image + mask pairs (GlaS, WSSS4LUAD, CAMELYON tiles).

Layout: ``root/images/<name>.<ext>`` and ``root/masks/<name>.<ext>`` matched by stem (read
through :mod:`htd_core.images`). Mask pixel values are class codes named by ``classes`` (list
in code order or ``{code: name}``); grey masks with lossy compression are binarised with
``threshold``. Known folders get their classes from :data:`TILE_SETS` (chosen by folder name
or ``preset``). Large tiles can be cut into patches that pass the same composition rule as
the slide samplers. ``match`` (a file-name glob) and ``split`` (``train`` / ``test``, by source
image: the official prefixes of a preset such as GlaS, else a seeded random split) choose the
tiles, so a training run never reads a test split.

Ids are opaque (:func:`htd_core.images.opaque_id`): ``slide_id`` of the tile's *source* image
(:func:`htd_core.splits.source_id`: tiles ``testA_10_r0_c0`` ... ``testA_10_r1_c1`` share
one), ``tile_id`` of the tile file itself.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import ClassMap, PatchSampler, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.images import (
    IMAGE_SUFFIXES,
    image_files,
    image_size,
    opaque_id,
    read_index_mask,
    read_rgb,
)
from htd_core.splits import source_id
from htd_plugins.slides.composition import CompositionRule, fractions, window_counts

#: Classes (in mask-code order) and mask encodings of the real tile sets in ``../shared/data``
#: (see its README), chosen by folder name or ``preset``. ``threshold``: masks are lossy
#: greyscale, class 1 where value > threshold.
TILE_SETS: dict[str, dict[str, Any]] = {
    "glas": {
        "classes": ("non_gland", "gland"),
        "threshold": None,
        # the official split, by file-name prefix (tiles of one source image share it)
        "splits": {"train": ("train_",), "test": ("testA_", "testB_")},
    },
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
        min_size: whole tiles smaller than this (px, either side) are too small to train on
            (default 16: the smallest model patch, the ``tiny`` preset's).
        small_tiles: a tile smaller than ``patch_size`` (or ``min_size``): ``error`` (refused,
            naming it) or ``skip`` (left out; one warning counts them).
        match: only tiles whose file name matches this glob (``"train_*"``).
        split: only the ``train`` or ``test`` part, split by source image, never by tile: by
            the set's official file-name prefixes when its preset has them (GlaS: ``train_*``
            vs ``testA_*`` / ``testB_*``), else a seeded random split of the source images
            (:func:`htd_core.splits.split_by_source` with ``test_fraction``, ``split_seed``).
        test_fraction: share of source images in ``test`` for a random split.
        split_seed: seed of a random split.
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
    min_size: int = 16
    small_tiles: str = "error"
    match: str | None = None
    split: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise InputError(
                f"tile folder {self.root} does not exist (resolved: {self.root.absolute()}); "
                "in a pipeline YAML, relative paths starting with ./ or ../ are relative to the "
                "YAML file, and ${HTD_SHARED_DATA} names the shared data folder"
            )
        if not (self.root / self.images).is_dir():
            raise InputError(f"tile folder {self.root} has no '{self.images}/' folder of images")
        self.dataset = self._htd_dataset()
        preset = self.preset or (self.root.name if self.root.name in TILE_SETS else None)
        if preset is not None and preset not in TILE_SETS:
            raise InputError(f"preset={preset!r}: known presets are {sorted(TILE_SETS)}")
        spec = TILE_SETS.get(preset, {}) if preset else {}
        self._split_prefixes = spec.get("splits") if self.dataset is None else None
        if self.dataset is not None and self.classes is None and not spec:
            spec = {"classes": self.dataset.class_map.names}  # the dataset's own classes.json
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
        if self.dataset is not None and tuple(names) == self.dataset.class_map.names:
            self._class_map = self.dataset.class_map  # its colours and ignore index too
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
        if self.small_tiles not in ("error", "skip"):
            raise InputError(f"small_tiles={self.small_tiles!r}: use 'error' or 'skip'")
        for name in ("patch_size", "stride", "limit", "min_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InputError(f"{name}={value!r}: give a positive integer")
        if self.stride is not None and self.patch_size is None:
            raise InputError("stride is given without patch_size: stride applies to cut patches")
        self.pairs = self._select(self._pairs())
        self._small = self._small_tiles() if self.min_size or self.patch_size else set()

    @property
    def class_map(self) -> ClassMap:
        return self._class_map

    def _htd_dataset(self) -> Any:
        """The folder as an htd dataset (``htd sample`` / ``htd generate`` output: manifest.csv
        and classes.json), or None for a plain tile folder."""
        from htd_core.dataset import Dataset

        if not ((self.root / "manifest.csv").is_file() and (self.root / "classes.json").is_file()):
            return None
        data = Dataset(self.root)
        self._rows = {(self.root / r["image"]).resolve(): r for r in data.rows}
        return data

    def _meta(self, image_path: Path) -> dict[str, Any]:
        """Ids of a tile: a plain folder's from its file name; an htd dataset's from its
        manifest row (the source slide's opaque id and mpp, the row index)."""
        meta: dict[str, Any] = {
            "slide_id": opaque_id(source_id(image_path.name)),
            "tile_id": opaque_id(image_path),
            "level": 0,
        }
        row = self._rows.get(image_path.resolve()) if self.dataset is not None else None
        if row is not None:
            meta.update(slide_id=row.get("slide_id") or meta["slide_id"], source_row=row["index"])
            if self.mpp is None and row.get("mpp"):
                meta["mpp"] = float(row["mpp"])
        if self.mpp is not None:
            meta["mpp"] = self.mpp
        return meta

    def expected_samples(self) -> int | None:
        """The tile count when tiles are taken whole and unfiltered (else unknown)."""
        if self.patch_size is not None or self.composition_rule is not None:
            return None
        n = len(self.pairs) - len(self._small)
        return n if self.limit is None else min(n, self.limit)

    def _select(self, pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
        """The pairs ``match`` and ``split`` keep (whole source images on one side)."""
        from htd_core.splits import split_by_prefix, split_by_source

        if self.match:
            pairs = [p for p in pairs if fnmatch.fnmatch(p[0].name, self.match)]
        if self.split is None:
            return self._nonempty(pairs)
        prefixes = self._split_prefixes
        allowed = sorted(prefixes) if prefixes else ["train", "test"]
        if self.split not in allowed:
            raise InputError(f"split={self.split!r}: use one of {allowed}")
        if prefixes:
            keep = split_by_prefix([p[0].name for p in pairs], prefixes)[self.split]
        else:
            if not 0 < self.test_fraction < 1:
                raise InputError(f"test_fraction={self.test_fraction}: use a value in (0, 1)")
            sources = [self._meta(p[0])["slide_id"] for p in pairs]
            train, test = split_by_source(sources, self.test_fraction, self.split_seed)
            keep = train if self.split == "train" else test
        return self._nonempty([pairs[i] for i in keep])

    def _nonempty(self, pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
        if not pairs:
            raise InputError(
                f"tile folder {self.root}: no tile matches match={self.match!r} and "
                f"split={self.split!r}"
            )
        return pairs

    def _pairs(self) -> list[tuple[Path, Path]]:
        if self.dataset is not None:  # the manifest pairs images and masks (complete rows only)
            return [(self.root / r["image"], self.root / r["mask"]) for r in self.dataset.rows]
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
            if image_path in self._small:
                continue
            image, mask = self.load(image_path, mask_path)
            meta = self._meta(image_path)
            for x, y, w, h in self._windows(mask):
                if self.limit is not None and produced >= self.limit:
                    return
                crop, sub = image[y : y + h, x : x + w], mask[y : y + h, x : x + w]
                info = {**meta, "x": x, "y": y, **({"patch_size": w} if w == h else {})}
                yield TissueSample(
                    np.ascontiguousarray(crop), np.ascontiguousarray(sub), self._class_map, info
                )
                produced += 1

    def _small_tiles(self) -> set[Path]:
        """Tiles smaller than the patches asked for, from the file headers: refused before
        any sample is made (``small_tiles="error"``), or left out with one warning."""
        need = self.patch_size or self.min_size
        what = f"patch_size={self.patch_size}" if self.patch_size else f"min_size={self.min_size}"
        small = {}
        for path, _ in self.pairs:
            w, h = image_size(path)
            if min(w, h) < need:
                small[path] = (w, h)
        if small and self.small_tiles == "error":
            path, (w, h) = next(iter(small.items()))
            more = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
            raise InputError(
                f"tile {path} is {w} x {h} px, smaller than {what}{more}: remove it, lower "
                f"{what.split('=')[0]}, or set small_tiles='skip'"
            )
        if small:
            warnings.warn(
                f"{len(small)} tile(s) of {self.root / self.images} are smaller than {need} px "
                f"and were skipped (small_tiles='skip'), e.g. {[p.name for p in small][:3]}",
                stacklevel=3,
            )
        return set(small)

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
