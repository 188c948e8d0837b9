"""Embedding extraction: the tissue patches of each slide (:mod:`~htd_plugins.discovery.patches`)
through the encoder into a float16 memmap per slide, resumable batch by batch, shardable over
a slide list.

A slide is stored under its opaque id (:func:`htd_core.images.opaque_id` of its file name);
the store records no path, so a resumed run, ``distill`` and ``maps --classifier`` are given
the slide files again and match them to the store by that id (:func:`slides_by_id`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_core.interfaces import Encoder
from htd_core.io import atomic_open, atomic_write_json, remove_stale_temps
from htd_plugins.discovery.grid import PatchGrid
from htd_plugins.discovery.patches import GridOptions, PatchDataset
from htd_plugins.discovery.store import EmbeddingStore
from htd_plugins.discovery.tiles import normalizer_of, plan_tiles, tile_features


def slides_by_id(slides: Sequence[str | Path]) -> dict[str, Path]:
    """Opaque slide id -> file, for matching given slides to a store's entries.

    Raises:
        InputError: two slides share a file name (and so an id).
    """
    out: dict[str, Path] = {}
    for path in slides:
        slide_id = opaque_id(path)
        if slide_id in out and out[slide_id] != Path(path):
            raise InputError(
                f"slides {out[slide_id]} and {path} share a file name: slide ids come from the "
                "file name and must be unique; rename one"
            )
        out[slide_id] = Path(path)
    return out


def embed_slide(
    store: EmbeddingStore,
    path: str | Path,
    encoder: Encoder,
    options: GridOptions,
    *,
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed one slide into ``store`` (resuming a partial run); returns its metadata.

    With the store's stain target (``store.stain_target``), the slide's source stain
    statistics are fitted once when it is planned (recorded in ``plan.json`` as
    ``stain_source``) and every patch is normalised before embedding
    (:mod:`htd_plugins.discovery.stain`).
    """
    from tqdm.auto import tqdm

    slide_id = opaque_id(path)
    if store.is_complete(slide_id):
        meta = store.entry(slide_id).meta
        check_same_plan(meta, path, options, slide_id)
        return {**meta, "status": "already done"}
    started = time.perf_counter()
    planned = resume_plan(store, path, options)
    slide = None
    if planned is None:
        slide, plan, coords = plan_tiles(path, slide_id, options, store_identity(store))
        save_plan(store, plan, coords)
    else:
        plan, coords = planned
    rows = SlideRows(store, plan)
    if rows.remaining:
        normalize = normalizer_of(plan, store.stain_target)
        grid = PatchGrid.from_dict(plan["grid"])
        dataset = PatchDataset(path, grid, coords[rows.done :], slide, normalize)
        if rows.done:
            print(f"{slide_id}: resuming at patch {rows.done} of {rows.n}", file=sys.stderr)
        bar = tqdm(total=rows.n, initial=rows.done, unit="patch", desc=slide_id,
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        for half in tile_features(dataset, encoder, batch_size, slide_id, workers):
            rows.write(half)
            bar.update(len(half))
        bar.close()
    return rows.finish(time.perf_counter() - started)


def store_identity(store: EmbeddingStore) -> dict[str, Any]:
    """What a slide's plan records of its store (and the stain target it is fitted to)."""
    return {"embed_dim": store.embed_dim, "encoder": store.encoder,
            "weights_id": store.weights_id, "stain_target": store.stain_target}  # fmt: skip


def resume_plan(
    store: EmbeddingStore, path: str | Path, options: GridOptions
) -> tuple[dict[str, Any], np.ndarray] | None:
    """(plan, coords) of a slide started in ``store`` by an earlier run, else None; prepares
    its folder (stale temporary files of a killed run removed).

    Raises:
        InputError: the slide was started with other grid options.
    """
    slide_id = opaque_id(path)
    folder = store.slide_folder(slide_id)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    plan_path = folder / "plan.json"
    if not plan_path.exists():
        return None
    plan = json.loads(plan_path.read_text())  # the grid and tissue cells are fixed by the first run
    check_same_plan(plan, path, options, slide_id)
    return plan, np.load(folder / "coords.npy", allow_pickle=False)


def save_plan(store: EmbeddingStore, plan: dict[str, Any], coords: np.ndarray) -> None:
    """Write a slide's ``coords.npy`` then ``plan.json`` (each atomically)."""
    folder = store.slide_folder(plan["slide_id"])
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(folder / "coords.npy") as fh:
        np.save(fh, coords)
    atomic_write_json(folder / "plan.json", plan)


class SlideRows:
    """The rows of one slide's ``embeddings.partial``, written in order and recorded in
    ``progress.json`` after every write; :meth:`finish` commits the slide (``embeddings.f16``
    by rename, then ``meta.json``): a slide is complete exactly when ``meta.json`` exists.

    Attributes:
        n: the slide's patch count; done: rows already final (a resumed run starts there).
    """

    def __init__(self, store: EmbeddingStore, plan: dict[str, Any]) -> None:
        self.folder, self.plan = store.slide_folder(plan["slide_id"]), plan
        self.n, self.dim = int(plan["n_patches"]), store.embed_dim
        progress = self.folder / "progress.json"
        self.done = json.loads(progress.read_text())["done"] if progress.exists() else 0
        self._finished = (self.folder / "embeddings.f16").exists() and self.done == self.n
        partial = self.folder / "embeddings.partial"
        if not (partial.exists() and self.done > 0):
            self.done = 0
        self._out: np.memmap | None = None

    @property
    def remaining(self) -> int:
        """Rows still to write (0 when the rows were final before a kill before meta.json)."""
        return 0 if self._finished else self.n - self.done

    def write(self, half: np.ndarray) -> None:
        """Append B x D float16 rows (flushed, then recorded in ``progress.json``)."""
        if self._out is None:
            mode = "r+" if self.done > 0 else "w+"
            partial = self.folder / "embeddings.partial"
            self._out = np.memmap(partial, np.float16, mode, shape=(self.n, self.dim))
        self._out[self.done : self.done + len(half)] = half
        self._out.flush()
        self.done += len(half)
        atomic_write_json(self.folder / "progress.json", {"done": self.done})

    def finish(self, seconds: float) -> dict[str, Any]:
        """Commit the slide; returns its metadata with ``status`` (done / no tissue)."""
        if self.n and not self._finished:
            if self.done != self.n:
                raise RuntimeError(f"slide {self.plan['slide_id']}: {self.done} of {self.n} rows")
            self._out = None
            os.replace(self.folder / "embeddings.partial", self.folder / "embeddings.f16")
        meta = {**self.plan, "seconds": round(seconds, 3), "complete": True}
        atomic_write_json(self.folder / "meta.json", meta)
        (self.folder / "progress.json").unlink(missing_ok=True)
        return {**meta, "status": "done" if self.n else "no tissue"}


def check_same_plan(
    plan: dict[str, Any], path: str | Path, options: GridOptions, slide_id: str
) -> None:
    """Refuse to resume or reuse a slide planned with another stride or tissue threshold.

    Raises:
        InputError: naming both settings and the fix.
    """
    grid = plan["grid"]
    if int(grid["stride"]) != int(options.stride) or not np.isclose(
        plan["min_tissue"], options.min_tissue
    ):
        raise InputError(
            f"slide {slide_id} ({path}) is already in the store with stride={grid['stride']}, "
            f"min_tissue={plan['min_tissue']}; this run asks stride={options.stride}, "
            f"min_tissue={options.min_tissue}: use the same options or another store"
        )


@dataclass
class EmbedReport:
    """What an ``embed`` run did per slide (done, already done, no tissue, skipped).

    Attributes:
        results: opaque slide id -> its metadata and ``status``.
        skipped: slide file (as given) -> why it was skipped.
        names: opaque slide id -> file name, for the terminal and the local-only
            ``slide_ids.csv`` (:mod:`.slide_ids`); never written anywhere else.
    """

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


def select_shard(
    slides: Sequence[str | Path], shard: tuple[int, int], process: tuple[int, int] = (0, 1)
) -> list[Path]:
    """Slides of shard ``i`` of ``n`` (0-based): every n-th slide of the sorted list; of
    those, process ``p`` of ``P`` (``accelerate launch``) takes every P-th. Every process
    computes the same split from the same list, so no coordination is needed."""
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise InputError(f"shard {i}/{n} is invalid: use i/n with 0 <= i < n (e.g. 0/4 ... 3/4)")
    ordered = sorted({str(Path(s)) for s in slides})
    slides_by_id(ordered)  # refuses two slides of one file name (one id)
    mine = [Path(s) for k, s in enumerate(ordered) if k % n == i]
    p, count = process
    return [s for k, s in enumerate(mine) if k % count == p]


def embed_slides(
    store: EmbeddingStore,
    slides: Sequence[str | Path],
    encoder: Encoder,
    options: GridOptions,
    *,
    shard: tuple[int, int] = (0, 1),
    process: tuple[int, int] = (0, 1),
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = True,
) -> EmbedReport:
    """Embed this shard's (and process's, see :func:`select_shard`) slides; a slide that fails
    is reported and skipped (a kill is not). Processes write disjoint slide folders."""
    from htd_core.errors import HtdError

    report = EmbedReport()
    for path in select_shard(slides, shard, process):
        try:
            meta = embed_slide(
                store, path, encoder, options, batch_size=batch_size, workers=workers,
                progress=progress,
            )  # fmt: skip
            report.results[meta["slide_id"]] = meta
            report.names[meta["slide_id"]] = path.name
        except HtdError as exc:
            report.skipped[str(path)] = str(exc)
        except Exception as exc:  # an unreadable region must not stop a 10,000-slide run
            report.skipped[str(path)] = f"{type(exc).__name__}: {exc}"
    return report
