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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import ClassMap, PatchSampler, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.images import opaque_id, read_index_mask, read_rgb
from htd_core.splits import source_id
from htd_core.types import class_names
from htd_plugins.samplers.tile_folders.cutting import code_lut, tile_windows
from htd_plugins.samplers.tile_folders.selection import (
    check_mask_sizes,
    select_tiles,
    small_tiles,
    tile_pairs,
)
from htd_plugins.slides.composition import CompositionRule

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
        if not isinstance(classes, Mapping):  # a list: one class per code, each named once
            named = [str(c) for c in classes if c != "@ignore"]
            class_names(named, f"tile folder {self.root}: classes={list(classes)}")
            own = self.dataset.class_map.names if self.dataset is not None else ()
            if sorted(named) == sorted(own) and tuple(named) != own:  # codes would swap classes
                raise InputError(
                    f"classes={named} names the classes of {self.root / 'classes.json'} "
                    f"({list(own)}) in another order, so its mask codes would change class: "
                    "leave classes out (the dataset's are used) or give them in its order"
                )
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
        self.pairs = select_tiles(
            tile_pairs(self.root, self.images, self.masks, self.dataset), self.root,
            match=self.match, split=self.split, prefixes=self._split_prefixes,
            test_fraction=self.test_fraction, split_seed=self.split_seed,
            source_of=lambda image: self._meta(image)["slide_id"],
        )  # fmt: skip
        check_mask_sizes(self.pairs)  # from the headers: nothing half-written later
        self._small: set[Path] = set()
        if self.min_size or self.patch_size:
            self._small = small_tiles(
                self.pairs, self.root / self.images, patch_size=self.patch_size,
                min_size=self.min_size, policy=self.small_tiles,
            )  # fmt: skip

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
        manifest row (the source slide's opaque id and mpp, the row index); the ``split``
        asked for (``train`` / ``test``), when one is."""
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
        if self.split is not None:  # recorded, so a later step knows the patch's split
            meta["split"] = self.split
        return meta

    def expected_samples(self) -> int | None:
        """The tile count when tiles are taken whole and unfiltered (else unknown)."""
        if self.patch_size is not None or self.composition_rule is not None:
            return None
        n = len(self.pairs) - len(self._small)
        return n if self.limit is None else min(n, self.limit)

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
        lut = code_lut(mask_path, codes, self.code_names, self._class_map, self.unknown_labels)
        return image, lut[codes].astype(np.uint8)

    def __iter__(self) -> Iterator[TissueSample]:
        """The samples, tile by tile.

        Raises:
            InputError: a pair cannot be read (:meth:`load`), or no tile gave a sample (the
                tiles read and skipped, and the rule that rejected the rest).
        """
        produced = read = 0
        for image_path, mask_path in self.pairs:
            if image_path in self._small:
                continue
            read += 1
            image, mask = self.load(image_path, mask_path)
            meta = self._meta(image_path)
            windows = tile_windows(
                mask, len(self._class_map), self.composition_rule, self.patch_size, self.stride
            )
            for x, y, w, h in windows:
                if self.limit is not None and produced >= self.limit:
                    return
                crop, sub = image[y : y + h, x : x + w], mask[y : y + h, x : x + w]
                info = {**meta, "x": x, "y": y, **({"patch_size": w} if w == h else {})}
                yield TissueSample(
                    np.ascontiguousarray(crop), np.ascontiguousarray(sub), self._class_map, info
                )
                produced += 1
        if produced == 0:
            raise InputError(self._why_empty(read))

    def _why_empty(self, read: int) -> str:
        """Why no tile gave a sample (the sampler knows; "yielded nothing" would not say)."""
        cut = f"cut into {self.patch_size} px patches" if self.patch_size else "taken whole"
        skipped = f", {len(self._small)} skipped as too small" if self._small else ""
        rule = self.composition_rule
        why = f"every window was rejected by {rule}" if rule else "no tile is large enough"
        return (
            f"0 samples: {read} tile(s) of {self.root} read ({cut}{skipped}); {why}: relax the "
            "rule (rule='none', min_frac / max_frac, min_classes, min_labeled) or check the "
            "masks and classes"
        )


@hookimpl
def htd_register_patch_samplers(registry) -> None:
    registry.register("tiles", TilesSampler)
