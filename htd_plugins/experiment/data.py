"""The experiment's real data: the train and held-out splits, by source image, at the model size.

Both splits come from one registered patch sampler (``data.sampler`` with ``data.options``)
with each split's own options (``data.train`` / ``data.test``, e.g. ``split: train``). Patches
are resized to the budget's ``image_size`` (area filter for images, nearest for masks; the
recorded ``mpp`` scales with them), a seeded subset of at most ``max_train`` / ``n_test`` is
kept, and the two splits are checked to share no source image (:func:`htd_core.splits.sample_source`).
The splits are written as htd datasets under ``OUT/data/`` (so ``htd evaluate`` can rerun on
them) and identified by a content fingerprint, which keys every later stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.types import TissueSample


@dataclass
class ExperimentData:
    """Training and held-out real samples (``meta['split']`` set) and a description."""

    train: list[TissueSample]
    test: list[TissueSample]
    description: str

    def fingerprint(self) -> str:
        """Content hash of both splits (pixels, masks, classes)."""
        import hashlib

        h = hashlib.sha256()
        for part in (self.train, self.test):
            h.update(str(len(part)).encode())
            for s in part:
                h.update(s.image.tobytes())
                h.update(np.asarray(s.mask, np.uint8).tobytes())
        h.update(repr(self.train[0].class_map.to_dict()).encode())
        return h.hexdigest()[:16]


#: A callable that returns the data instead of the config's sampler (``htd demo`` uses one).
DataSource = Callable[[], ExperimentData]


def sample_splits(data: dict[str, Any], image_size: int, max_train: int, n_test: int, seed: int,
                  where: str = "data") -> ExperimentData:  # fmt: skip
    """Sample both splits with the config's sampler (see the module docstring).

    Raises:
        InputError: a split with no patch (how many tiles were scanned, and the rule that
            rejected them), classes that differ between the splits, or a source image in both.
    """
    from htd_core.plugins import create

    parts: dict[str, list[TissueSample]] = {}
    for part in ("train", "test"):
        options = {**(data.get("options") or {}), **(data.get(part) or {})}
        sampler = create("patch_samplers", data["sampler"], **options)
        try:
            samples = [resize_sample(s, image_size) for s in sampler]
        except InputError as exc:  # the sampler says why (0 samples: what it scanned, the rule)
            raise InputError(f"{where}.{part}: {exc}") from None
        if not samples:  # a sampler that does not say why
            raise InputError(_no_patches(where, part, data["sampler"], sampler, options))
        limit = max_train if part == "train" else n_test
        samples = subset(samples, limit, seed + (part == "test"))
        parts[part] = [_tag(s, part) for s in samples]
    train, test = parts["train"], parts["test"]
    if train[0].class_map != test[0].class_map:
        raise InputError(
            f"{where}: the train split has classes {list(train[0].class_map.names)} but the test "
            f"split {list(test[0].class_map.names)}: give both splits the same classes"
        )
    check_sources(train, test, where)
    n_sources = len({_source(s) for s in train}), len({_source(s) for s in test})
    desc = (
        f"{data['sampler']} {Path(str((data.get('options') or {}).get('root', ''))).name}: "
        f"{len(train)} training patches from {n_sources[0]} source images, {len(test)} held-out "
        f"patches from {n_sources[1]} source images, {image_size} px"
    )
    return ExperimentData(train, test, desc)


def check_sources(train: Sequence[TissueSample], test: Sequence[TissueSample], where: str) -> None:
    """Refuse splits that share a source image, naming (opaque ids of) the shared ones.

    Raises:
        InputError: a source image in both splits.
    """
    shared = sorted({_source(s) for s in train} & {_source(s) for s in test} - {""})
    if shared:
        raise InputError(
            f"{where}: the train and test splits share {len(shared)} source image(s), e.g. "
            f"{shared[:3]}: split by source image (e.g. split: train / split: test), never by tile"
        )


def write_splits(data: ExperimentData, folder: Path) -> None:
    """Write both splits as htd datasets ``folder/train`` and ``folder/test`` (replacing an
    earlier copy written by this runner)."""
    from htd_core.dataset import DatasetWriter
    from htd_core.io import atomic_write_folder

    for part, samples in (("train", data.train), ("test", data.test)):

        def write(tmp: Path, samples: list[TissueSample] = samples) -> None:
            with DatasetWriter(tmp, samples[0].class_map, ("split",)) as writer:
                for s in samples:
                    writer.write(s)

        atomic_write_folder(folder / part, write, kind="experiment-data")


def resize_sample(sample: TissueSample, size: int) -> TissueSample:
    """``sample`` at ``size`` x ``size`` px (a non-square one centre-cropped first; area filter
    for the image, nearest for the mask), its ``meta["mpp"]`` scaled to match.

    Raises:
        InputError: the patch is smaller than ``size`` (it would be upsampled).
    """
    from PIL import Image

    h, w = sample.mask.shape[:2]
    if min(h, w) < size:
        raise InputError(
            f"a {h} x {w} px patch is smaller than the model size {size} px and would be "
            f"upsampled: cut patches of at least {size} px (data.options.patch_size) or use a "
            "smaller image_size"
        )
    if (h, w) == (size, size):
        return sample
    if h != w:
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        sample = TissueSample(sample.image[y : y + side, x : x + side],
                              sample.mask[y : y + side, x : x + side], sample.class_map, sample.meta)  # fmt: skip
        h = w = side
    image = np.asarray(Image.fromarray(sample.image).resize((size, size), Image.Resampling.BOX))
    mask = np.asarray(
        Image.fromarray(np.asarray(sample.mask, np.uint8)).resize(
            (size, size), Image.Resampling.NEAREST
        )
    )
    meta = dict(sample.meta)
    if meta.get("mpp") not in (None, ""):
        meta["mpp"] = float(meta["mpp"]) * h / size
    return TissueSample(image, mask, sample.class_map, meta)


def subset(samples: list[TissueSample], limit: int, seed: int) -> list[TissueSample]:
    """At most ``limit`` of ``samples``, a seeded random choice kept in the original order."""
    if len(samples) <= limit:
        return samples
    chosen = sorted(np.random.default_rng(seed).permutation(len(samples))[:limit].tolist())
    return [samples[i] for i in chosen]


def _tag(sample: TissueSample, split: str) -> TissueSample:
    return TissueSample(
        sample.image, sample.mask, sample.class_map, {**sample.meta, "split": split}
    )


def _source(sample: TissueSample) -> str:
    from htd_core.splits import sample_source

    return sample_source(sample.meta)


def _no_patches(where: str, part: str, name: str, sampler: Any, options: dict[str, Any]) -> str:
    """Why a split gave no patch: how much was scanned, and the composition rule."""
    tiles = len(getattr(sampler, "pairs", ()) or ())
    scanned = f"{tiles} tile(s) scanned" if tiles else "everything the sampler read scanned"
    rule = options.get("rule", "heterogeneous")
    why = (
        f"none held >= {options.get('min_classes', 2)} classes each covering "
        f"{options.get('min_frac', 0.2):g}-{options.get('max_frac', 0.8):g} of a "
        f"{options.get('patch_size', 'whole-tile')} px patch (the paper's heterogeneous rule)"
        if rule == "heterogeneous"
        else f"none passed rule={rule!r}"
    )
    return (
        f"{where}.{part}: the {name} sampler gave 0 patches ({scanned}; {why}): check the "
        "masks and classes, or the split's options"
    )
