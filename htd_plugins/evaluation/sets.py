"""Evaluation sets from folders: htd datasets, tile folders of image + mask pairs, or images.

* an htd dataset: ``manifest.csv`` + ``classes.json`` (``htd sample``, ``htd generate``);
* a tile folder: ``images/`` + ``masks/`` matched by stem (the layout of
  ``../shared/data/glas``), read with the registered ``tiles`` sampler, which knows the
  classes of the shared tile sets (or takes ``classes``);
* images alone (``images/`` or a flat folder, listed and read by :mod:`htd_core.images`):
  masks are all ignore index and ``meta["mask"] == "none"`` (enough for evaluators that use
  images only).

A tile folder's or image folder's sample carries opaque ids only, as the ``tiles`` sampler
writes them (:func:`htd_core.images.opaque_id`): ``slide_id`` of its source image (the file
name with any tile suffix stripped), ``tile_id`` of the file; never a file name. Samples are
read lazily, on access, so large sets stream through the evaluators; their metadata
(:meth:`LazySet.metas`: source ids, provenance) and a key of their content
(:meth:`LazySet.content_key`: every file's name, size and modification time) are read
without decoding any image.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def open_set(
    path: str | Path,
    *,
    match: str | None = None,
    limit: int | None = None,
    classes: Sequence[str] | None = None,
    split: str | None = None,
    seed: int = 0,
) -> Sequence[Any]:
    """A lazy sequence of TissueSamples from a set folder (see the module docstring).

    Args:
        path: the folder.
        match: keep only files whose name matches this glob.
        limit: keep at most this many: a seeded sample spread over the source images (one
            item of each source in turn, :func:`htd_core.splits.spread_by_source`), in name
            order.
        classes: class names for a tile folder that is not a known preset.
        split: written to every sample's ``meta["split"]`` (``"test"`` marks held-out data).
        seed: seed of the ``limit`` sample.
    """
    from htd_core.errors import InputError

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"set folder {root} does not exist")
    if (root / "manifest.csv").is_file() and (root / "classes.json").is_file():
        from htd_core.dataset import Dataset

        ds = Dataset(root)
        rows = [
            i
            for i, r in enumerate(ds.rows)
            if not match or fnmatch.fnmatch(Path(r["image"]).name, match)
        ]
        rows = _spread(rows, limit, lambda i: ds.rows[i], seed)
        return LazySet(
            root, rows, lambda i: ds[i], split,
            describe=lambda i: dict(ds.rows[i]),
            files=lambda i: [root / ds.rows[i]["image"], root / ds.rows[i]["mask"]],
            extra_files=[root / "manifest.csv", root / "classes.json"],
        )  # fmt: skip
    if (root / "images").is_dir() and (root / "masks").is_dir():
        from htd_core.plugins import create

        options: dict[str, Any] = {"root": root}
        if classes:
            options["classes"] = list(classes)
        sampler = create("patch_samplers", "tiles", **options)
        pairs = [p for p in sampler.pairs if not match or fnmatch.fnmatch(p[0].name, match)]
        pairs = _spread(pairs, limit, lambda pair: _ids(pair[0]), seed)
        return LazySet(
            root, pairs, lambda pair: _tile(sampler, pair), split,
            describe=lambda pair: _ids(pair[0]), files=list,
        )  # fmt: skip
    from htd_core.images import image_files

    folder = root / "images" if (root / "images").is_dir() else root
    files = image_files(folder, match)
    if not files and not (root / "images").is_dir():
        raise InputError(
            f"{root} is neither an htd dataset (manifest.csv + classes.json), a tile folder "
            "(images/ + masks/) nor a folder of images"
        )
    files = _spread(files, limit, _ids, seed)
    return LazySet(root, files, _image_only, split, describe=_ids, files=lambda p: [p])


def _spread(keys: list, limit: int | None, describe: Callable[[Any], Any], seed: int) -> list:
    """At most ``limit`` of ``keys``, spread over their source images (seeded)."""
    from htd_core.splits import sample_source, spread_by_source

    if limit is None or limit >= len(keys):
        return keys
    sources = [sample_source(describe(k)) for k in keys]
    return [keys[i] for i in spread_by_source(sources, limit, seed)]


class LazySet(Sequence):
    """Items loaded on access; ``split`` is added to every sample's meta when given.

    Args:
        root: the set's folder.
        keys: one key per item (a manifest row index, an image + mask pair, a file).
        load: key -> TissueSample (decodes the files).
        split: written to every sample's ``meta["split"]``.
        describe: key -> the item's metadata without its pixels (manifest row, opaque ids).
        files: key -> the files the item is read from (for :meth:`content_key`).
        extra_files: files the whole set depends on (a manifest, a class list).
    """

    def __init__(
        self,
        root: Path,
        keys: list,
        load: Callable[[Any], Any],
        split: str | None,
        *,
        describe: Callable[[Any], dict[str, Any]] | None = None,
        files: Callable[[Any], list[Path]] | None = None,
        extra_files: Sequence[Path] = (),
    ) -> None:
        self.root, self.keys, self._load, self.split = root, keys, load, split
        self._describe, self._files, self._extra = describe, files, list(extra_files)

    def metas(self) -> list[dict[str, Any]]:
        """Every item's metadata (manifest row or opaque ids), read without its pixels."""
        if self._describe is None:
            return [self[i].meta for i in range(len(self))]
        return [
            {**self._describe(k), **({"split": self.split} if self.split else {})}
            for k in self.keys
        ]

    def content_key(self) -> str:
        """SHA-256 of every file's path (relative to the set), size and modification time:
        a set rewritten with other images of the same count gets another key."""
        digest = hashlib.sha256(f"{len(self.keys)}|{self.split}".encode())
        paths = [*self._extra, *(f for k in self.keys for f in (self._files or _no_files)(k))]
        for path in paths:
            st = Path(path).stat()
            rel = (
                Path(path).relative_to(self.root) if Path(path).is_relative_to(self.root) else path
            )
            digest.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        from htd_core.errors import InputError

        try:
            sample = self._load(self.keys[i])
        except (OSError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"{self.root}: cannot read item {i} ({type(exc).__name__}: {exc})"
            ) from exc
        if self.split:
            sample.meta["split"] = self.split
        return sample


def _ids(path: Path) -> dict[str, str]:
    """Opaque ids as the ``tiles`` sampler writes them: ``slide_id`` of the file's source image
    (tile suffix such as ``_r0_c1`` stripped), ``tile_id`` of the file itself."""
    from htd_core.images import opaque_id
    from htd_core.splits import source_id

    return {"slide_id": opaque_id(source_id(path.name)), "tile_id": opaque_id(path)}


def _tile(sampler: Any, pair: tuple[Path, Path]) -> Any:
    """An image + mask pair read by the ``tiles`` sampler."""
    from htd_core.types import TissueSample

    image, mask = sampler.load(*pair)
    return TissueSample(image, mask, sampler.class_map, _ids(pair[0]))


def _image_only(path: Path) -> Any:
    """An image without a mask: every mask pixel is the ignore index."""
    import numpy as np

    from htd_core.images import read_rgb
    from htd_core.types import ClassMap, TissueSample

    image = read_rgb(path)
    cm = ClassMap(("unlabelled",))
    mask = np.full(image.shape[:2], cm.ignore_index, np.uint8)
    return TissueSample(image, mask, cm, {**_ids(path), "mask": "none"})


def _no_files(key: Any) -> list[Path]:
    from htd_core.errors import InputError

    raise InputError(f"cannot key the content of item {key!r}: its set lists no files")


class Concat(Sequence):
    """Several sequences read as one (held-out real + real training)."""

    def __init__(self, parts: list[Sequence[Any]]) -> None:
        self.parts = parts

    def content_key(self) -> str:
        """The parts' content keys, combined in order."""
        keys = [p.content_key() for p in self.parts]  # type: ignore[attr-defined]
        return hashlib.sha256("|".join(keys).encode()).hexdigest()

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        for p in self.parts:
            if i < len(p):
                return p[i]
            i -= len(p)
        raise IndexError(i)
