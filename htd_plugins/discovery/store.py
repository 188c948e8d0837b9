"""The embedding store: per slide, float16 memory-mapped embeddings plus grid coordinates.

::

    store/store.json                       encoder name, weights_id, embed_dim, read_mpp, patch_size
    store/slides/<id>/plan.json            grid geometry, tissue settings, patch count
    store/slides/<id>/coords.npy           N x 2 int32 (row, col) of the tissue cells
    store/slides/<id>/embeddings.partial   N x D float16 while being written (memmap)
    store/slides/<id>/progress.json        rows of ``embeddings.partial`` that are final
    store/slides/<id>/embeddings.f16       N x D float16, once complete
    store/slides/<id>/meta.json            written last: the slide is complete

``<id>`` is the slide's opaque id (:func:`htd_core.images.opaque_id` of its file name). The
store records no file name or path: a resumed ``embed``, ``distill`` and ``maps
--classifier`` are given the slide files again and match them by that id.

A store belongs to one encoder (name + weights hash) and one physical patch definition
(read mpp, patch size); anything else is refused, so embeddings never mix silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.io import atomic_write_json

FORMAT = "htd-embeddings/1"
#: What a store is made with; ``stain`` is the stain normalisation (None: none; stores made
#: before it existed have none).
IDENTITY_KEYS = ("encoder", "weights_id", "embed_dim", "read_mpp", "patch_size", "stain")


@dataclass(frozen=True)
class SlideEntry:
    """A complete slide of a store: its metadata, coordinates and embeddings (memmap)."""

    slide_id: str
    folder: Path
    meta: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.meta["n_patches"])

    def coords(self) -> np.ndarray:
        return np.load(self.folder / "coords.npy", allow_pickle=False)

    def embeddings(self) -> np.memmap | np.ndarray:
        """N x D float16, memory-mapped (nothing is loaded until read)."""
        dim = int(self.meta["embed_dim"])
        if self.n == 0:
            return np.zeros((0, dim), np.float16)
        return np.memmap(self.folder / "embeddings.f16", np.float16, "r", shape=(self.n, dim))


class EmbeddingStore:
    """A folder of per-slide embeddings made by one encoder.

    Args:
        root: store folder.
        identity: ``encoder``, ``weights_id``, ``embed_dim``, ``read_mpp``, ``patch_size``
            and ``stain`` (a label, or None) to create or check the store with, and, when
            ``stain`` is set, ``stain_target`` (the fitted target it records, see
            :func:`htd_plugins.discovery.stain.fit_target`); None opens an existing store
            read-only.

    Raises:
        InputError: the store was made with another encoder or patch definition, or (when
            ``identity`` is None) the folder is not a store.
    """

    def __init__(self, root: str | Path, identity: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        path = self.root / "store.json"
        if path.exists():
            self.info = json.loads(path.read_text())
            if identity is not None:
                self._check(identity)
        elif identity is None:
            raise InputError(
                f"{self.root} is not an embedding store (no store.json): run "
                "`htd discover embed SLIDES --out DIR` first"
            )
        else:
            self.info = {"format": FORMAT, **{k: identity.get(k) for k in IDENTITY_KEYS}}
            if identity.get("stain_target") is not None:
                self.info["stain_target"] = identity["stain_target"]
            atomic_write_json(path, self.info)

    def _check(self, identity: dict[str, Any]) -> None:
        for key in IDENTITY_KEYS:
            ours, theirs = self.info.get(key), identity.get(key)
            same = np.isclose(float(ours), float(theirs)) if key == "read_mpp" else ours == theirs
            if not same:
                raise InputError(
                    f"embedding store {self.root} was made with {key}={ours!r} "
                    f"(encoder {self.info.get('encoder')!r}, weights {self.info.get('weights_id')!r})"
                    f", but this run uses {key}={theirs!r}: use another --out folder, or the "
                    "store's encoder, patch and stain normalisation settings"
                )

    def check_encoder(self, name: str, weights_id: str) -> None:
        """Refuse to use this store's embeddings with another encoder's centroids."""
        if (self.info["encoder"], self.info["weights_id"]) != (name, weights_id):
            raise InputError(
                f"embedding store {self.root} holds {self.info['encoder']!r} embeddings "
                f"(weights {self.info['weights_id']!r}) but the clustering was fitted on "
                f"{name!r} (weights {weights_id!r}): cluster this store, or use the store "
                "the clustering was made from"
            )

    @property
    def encoder(self) -> str:
        return str(self.info["encoder"])

    @property
    def weights_id(self) -> str:
        return str(self.info["weights_id"])

    @property
    def embed_dim(self) -> int:
        return int(self.info["embed_dim"])

    @property
    def stain_target(self) -> dict[str, Any] | None:
        """The stain normalisation target the store's patches were mapped to (None: none)."""
        return self.info.get("stain_target")

    def slide_folder(self, slide_id: str) -> Path:
        return self.root / "slides" / slide_id

    def is_complete(self, slide_id: str) -> bool:
        return (self.slide_folder(slide_id) / "meta.json").exists()

    def entry(self, slide_id: str) -> SlideEntry:
        folder = self.slide_folder(slide_id)
        if not (folder / "meta.json").exists():
            raise InputError(
                f"slide {slide_id!r} is not complete in store {self.root}: rerun "
                "`htd discover embed` on it (it resumes)"
            )
        return SlideEntry(slide_id, folder, json.loads((folder / "meta.json").read_text()))

    def slide_ids(self) -> list[str]:
        """Sorted ids of the complete slides."""
        base = self.root / "slides"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "meta.json").exists())

    def entries(self) -> Iterator[SlideEntry]:
        for slide_id in self.slide_ids():
            yield self.entry(slide_id)


def check_finite(entries: Iterable[SlideEntry]) -> None:
    """Refuse embeddings holding NaN or inf, naming the store file and the rows (streamed:
    a memmap larger than RAM is read in chunks).

    Raises:
        InputError: the first slide with a non-finite row: its ``embeddings.f16``, the count
            and the first rows, and the fix (re-embed that slide).
    """
    from htd_plugins.discovery.streaming import iter_chunks

    for entry in entries:
        rows: list[int] = []
        count = 0
        for start, block in iter_chunks(entry.embeddings()):
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            count += len(bad)
            rows += (bad[: max(5 - len(rows), 0)] + start).tolist()
        if count:
            shown = ", ".join(map(str, rows)) + (", ..." if count > len(rows) else "")
            raise InputError(
                f"embedding store file {entry.folder / 'embeddings.f16'} holds NaN or inf in "
                f"{count} of {entry.n} rows (rows {shown}) of slide {entry.slide_id}: delete "
                f"{entry.folder} and rerun `htd discover embed` on that slide; nothing was written"
            )


def open_stores(roots: list[str | Path]) -> list[EmbeddingStore]:
    """Open several stores that must share one encoder and patch definition."""
    if not roots:
        raise InputError("no embedding store given: pass --store DIR (repeatable)")
    stores = [EmbeddingStore(r) for r in roots]
    first = stores[0]
    for other in stores[1:]:
        other._check(first.info)
    return stores
