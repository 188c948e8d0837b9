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
from htd_plugins.discovery.patches import GridOptions, PatchDataset, patch_batches, plan_slide
from htd_plugins.discovery.store import EmbeddingStore


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

    from htd_plugins.discovery.stain import PatchNormalizer

    slide_id = opaque_id(path)
    folder = store.slide_folder(slide_id)
    if store.is_complete(slide_id):
        meta = store.entry(slide_id).meta
        _check_same_plan(meta, path, options, slide_id)
        return {**meta, "status": "already done"}
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    plan_path = folder / "plan.json"
    slide = None
    if plan_path.exists():  # resuming: the grid and tissue cells are fixed by the first run
        plan = json.loads(plan_path.read_text())
        _check_same_plan(plan, path, options, slide_id)
        grid = PatchGrid.from_dict(plan["grid"])
        coords = np.load(folder / "coords.npy", allow_pickle=False)
    else:
        slide, grid, coords = plan_slide(path, options)
        plan = {
            "slide_id": slide_id,
            "grid": grid.to_dict(),
            "min_tissue": options.min_tissue,
            "n_patches": int(len(coords)),
            "embed_dim": store.embed_dim,
            "encoder": store.encoder,
            "weights_id": store.weights_id,
        }
        if store.stain_target is not None:  # fitted once per slide, before any patch
            plan["stain_source"] = PatchNormalizer.for_slide(
                store.stain_target, slide, grid.read_mpp
            ).source
        with atomic_open(folder / "coords.npy") as fh:
            np.save(fh, coords)
        atomic_write_json(plan_path, plan)
    n, dim = len(coords), store.embed_dim
    partial = folder / "embeddings.partial"
    progress_path = folder / "progress.json"
    done = json.loads(progress_path.read_text())["done"] if progress_path.exists() else 0
    started = time.perf_counter()
    finished = (folder / "embeddings.f16").exists() and done == n  # killed before meta.json
    if n and not finished:
        mode = "r+" if partial.exists() and done > 0 else "w+"
        done = done if mode == "r+" else 0
        out = np.memmap(partial, np.float16, mode, shape=(n, dim))
        stain = store.stain_target
        normalize = None if stain is None else PatchNormalizer(stain, plan["stain_source"])
        dataset = PatchDataset(path, grid, coords[done:], slide, normalize)
        if done:
            print(f"{slide_id}: resuming at patch {done} of {n}", file=sys.stderr)
        bar = tqdm(total=n, initial=done, unit="patch", desc=slide_id, disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        for batch in patch_batches(dataset, batch_size, workers):
            feats = encoder(batch, batch_size=batch_size).numpy()
            half = feats.astype(np.float16)
            if not np.isfinite(half).all():
                raise InputError(
                    f"{encoder.label} features of slide {slide_id} overflow float16 "
                    f"(max |x| = {np.abs(feats).max():.3g}): normalise the encoder output"
                )
            out[done : done + len(half)] = half
            out.flush()
            done += len(half)
            atomic_write_json(progress_path, {"done": done})
            bar.update(len(half))
        bar.close()
        del out
        os.replace(partial, folder / "embeddings.f16")
    meta = {**plan, "seconds": round(time.perf_counter() - started, 3), "complete": True}
    atomic_write_json(folder / "meta.json", meta)
    progress_path.unlink(missing_ok=True)
    return {**meta, "status": "done" if n else "no tissue"}


def _check_same_plan(
    plan: dict[str, Any], path: str | Path, options: GridOptions, slide_id: str
) -> None:
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
