"""Which tiles of a folder the ``tiles`` sampler reads: image + mask pairs matched by stem (or
an htd dataset's manifest rows), kept by ``match`` and ``split`` (whole source images on one
side), masks checked against their images' sizes, and tiles too small for the patches asked
for (refused or skipped); all from the file headers, before any sample is made.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from htd_core.errors import InputError
from htd_core.images import IMAGE_SUFFIXES, image_files, image_size

Pair = tuple[Path, Path]


def tile_pairs(root: Path, images: str, masks: str, dataset: Any = None) -> list[Pair]:
    """(image, mask) of every tile: an htd dataset's manifest rows (complete rows only), else
    ``root/images`` and ``root/masks`` matched by file stem.

    Raises:
        InputError: no images, no mask folder, or an image without a mask.
    """
    if dataset is not None:  # the manifest pairs images and masks (complete rows only)
        return [(root / r["image"], root / r["mask"]) for r in dataset.rows]
    found = image_files(root / images)
    if not found:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root / images}")
    if not (root / masks).is_dir():
        raise InputError(f"tile folder {root} has no '{masks}/' folder of masks")
    by_stem = {p.stem: p for p in image_files(root / masks)}
    missing = [p.name for p in found if p.stem not in by_stem]
    if missing:
        raise InputError(
            f"{len(missing)} image(s) in {root / images} have no mask of the same "
            f"name in {root / masks}, e.g. {missing[:3]}"
        )
    return [(p, by_stem[p.stem]) for p in found]


def select_tiles(
    pairs: list[Pair],
    root: Path,
    *,
    match: str | None,
    split: str | None,
    prefixes: dict[str, Sequence[str]] | None,
    test_fraction: float,
    split_seed: int,
    source_of: Callable[[Path], str],
) -> list[Pair]:
    """The pairs ``match`` and ``split`` keep (whole source images on one side): a split by
    the preset's file-name ``prefixes`` when it has them, else a seeded random split of the
    source images (``source_of`` an image file).

    Raises:
        InputError: an unknown split, a bad ``test_fraction``, or no tile left.
    """
    from htd_core.splits import split_by_prefix, split_by_source

    if match:
        pairs = [p for p in pairs if fnmatch.fnmatch(p[0].name, match)]
    if split is None:
        return _nonempty(pairs, root, match, split)
    allowed = sorted(prefixes) if prefixes else ["train", "test"]
    if split not in allowed:
        raise InputError(f"split={split!r}: use one of {allowed}")
    if prefixes:
        keep = split_by_prefix([p[0].name for p in pairs], prefixes)[split]
    else:
        if not 0 < test_fraction < 1:
            raise InputError(f"test_fraction={test_fraction}: use a value in (0, 1)")
        sources = [source_of(p[0]) for p in pairs]
        train, test = split_by_source(sources, test_fraction, split_seed)
        keep = train if split == "train" else test
    return _nonempty([pairs[i] for i in keep], root, match, split)


def _nonempty(pairs: list[Pair], root: Path, match: str | None, split: str | None) -> list[Pair]:
    if not pairs:
        raise InputError(f"tile folder {root}: no tile matches match={match!r} and split={split!r}")
    return pairs


def check_mask_sizes(pairs: list[Pair]) -> None:
    """Every mask the size of its image, from the file headers, before any sample is made
    (a mismatch found while sampling would leave a half-written output).

    Raises:
        InputError: the first mask of another size, its image's size (the valid one), and how
            many more differ.
    """
    wrong = []
    for image, mask in pairs:
        size, mask_size = image_size(image), image_size(mask, "mask")
        if size != mask_size:
            wrong.append((image, mask, size, mask_size))
    if wrong:
        image, mask, (w, h), (mw, mh) = wrong[0]
        more = f" (and {len(wrong) - 1} more pair(s))" if len(wrong) > 1 else ""
        raise InputError(
            f"mask {mask} is {mw} x {mh} px but its image {image} is {w} x {h} px{more}: a mask "
            f"labels its image pixel for pixel; give a {w} x {h} px mask"
        )


def small_tiles(
    pairs: list[Pair],
    folder: Path,
    *,
    patch_size: int | None,
    min_size: int,
    policy: str,
) -> set[Path]:
    """Tiles smaller than the patches asked for, from the file headers: refused before any
    sample is made (``policy="error"``), or left out with one warning (``"skip"``)."""
    need = patch_size or min_size
    what = f"patch_size={patch_size}" if patch_size else f"min_size={min_size}"
    small = {}
    for path, _ in pairs:
        w, h = image_size(path)
        if min(w, h) < need:
            small[path] = (w, h)
    if small and policy == "error":
        path, (w, h) = next(iter(small.items()))
        more = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
        raise InputError(
            f"tile {path} is {w} x {h} px, smaller than {what}{more}: remove it, lower "
            f"{what.split('=')[0]}, or set small_tiles='skip'"
        )
    if small:
        warnings.warn(
            f"{len(small)} tile(s) of {folder} are smaller than {need} px "
            f"and were skipped (small_tiles='skip'), e.g. {[p.name for p in small][:3]}",
            stacklevel=3,
        )
    return set(small)
