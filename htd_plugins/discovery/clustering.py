"""``cluster`` stage: diverse patches of every slide -> phenotype centroids + merge tree.

Output folder::

    sample.f16      S x D float16 diversity sample of all slides (memmap input of k-means)
    sample.json     slides and how many patches each contributed
    centroids.npy   P x D float32 phenotype centroids, leaves in merge-tree order
    tree.json       merge tree, levels, encoder identity, options, inertia, counts
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.io import atomic_open, atomic_write_json
from htd_plugins.discovery.diversity import sample_slide
from htd_plugins.discovery.kmeans import HierarchicalKMeans, KMeansOptions
from htd_plugins.discovery.store import EmbeddingStore, SlideEntry, check_finite, open_stores
from htd_plugins.discovery.streaming import iter_chunks
from htd_plugins.slides import DEFAULT_LEVELS, PhenotypeTree

FORMAT = "htd-phenotypes/1"


@dataclass
class Phenotypes:
    """Fitted phenotypes: centroids (leaf order), merge tree, and the encoder they belong to."""

    centers: np.ndarray
    tree: PhenotypeTree
    encoder: str
    weights_id: str
    info: dict[str, Any]

    @property
    def clustering_id(self) -> str:
        """Content hash of the centroids (classifiers and maps record it)."""
        return hashlib.sha256(np.ascontiguousarray(self.centers).tobytes()).hexdigest()[:16]

    @property
    def levels(self) -> tuple[int, ...]:
        return self.tree.levels

    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        """Nearest phenotype (leaf id) per row, streamed (float16 memmaps welcome)."""
        from htd_plugins.discovery.streaming import assign

        out = np.empty(len(embeddings), np.int64)
        for start, block in iter_chunks(embeddings):
            out[start : start + len(block)] = assign(block, self.centers)[0]
        return out

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        with atomic_open(folder / "centroids.npy") as fh:
            np.save(fh, self.centers.astype(np.float32))
        info = {
            **self.info,
            "format": FORMAT,
            "encoder": self.encoder,
            "weights_id": self.weights_id,
            "clustering_id": self.clustering_id,
            "tree": self.tree.to_dict(),
        }
        atomic_write_json(folder / "tree.json", info)

    @classmethod
    def load(cls, folder: str | Path) -> Phenotypes:
        folder = Path(folder)
        if not (folder / "tree.json").exists() or not (folder / "centroids.npy").exists():
            raise InputError(
                f"{folder} holds no clustering (tree.json + centroids.npy): run "
                "`htd discover cluster --store STORE --out DIR` first"
            )
        info = json.loads((folder / "tree.json").read_text())
        centers = np.load(folder / "centroids.npy", allow_pickle=False)
        tree = PhenotypeTree.from_dict(info.pop("tree"))
        if tree.n_leaves != len(centers):
            raise InputError(
                f"{folder}: tree has {tree.n_leaves} leaves but {len(centers)} centroids"
            )
        return cls(centers, tree, info.pop("encoder"), info.pop("weights_id"), info)


def build_sample(
    stores: list[EmbeddingStore],
    out: Path,
    samples_per_slide: int,
    diversity: float,
    seed: int,
    progress: bool = True,
    workers: int = 0,
) -> tuple[Path, list[dict[str, Any]]]:
    """Write the diversity sample of every complete slide to ``out/sample.f16`` (atomically).

    ``workers`` > 0 samples slides in that many processes (one torch thread each); the file
    is the same byte for byte, slides in store order.
    """
    from tqdm.auto import tqdm

    entries = [e for s in stores for e in s.entries()]
    if not entries:
        raise InputError(
            f"no complete slide in {[str(s.root) for s in stores]}: run `htd discover embed` first"
        )
    ids = [e.slide_id for e in entries]
    if len(set(ids)) != len(ids):
        raise InputError(
            f"a slide appears in several stores: {sorted({i for i in ids if ids.count(i) > 1})}"
        )
    rows: list[dict[str, Any]] = []
    path = out / "sample.f16"
    job = partial(_choose, m=samples_per_slide, diversity=diversity, seed=seed)
    with atomic_open(path) as fh, _pool(workers) as pool:
        chosen_rows = pool.map(job, entries) if pool else map(job, entries)
        bar = tqdm(zip(entries, chosen_rows, strict=True), total=len(entries),
                   desc="diversity sampling", unit="slide", disable=not progress, file=sys.stderr)  # fmt: skip
        for entry, chosen in bar:
            emb = entry.embeddings()
            for start in range(0, len(chosen), 8192):
                np.asarray(emb[chosen[start : start + 8192]], np.float16).tofile(fh)
            rows.append(
                {"slide_id": entry.slide_id, "n_patches": entry.n, "sampled": int(len(chosen))}
            )
    return path, rows


def _choose(entry: SlideEntry, m: int, diversity: float, seed: int) -> np.ndarray:
    """Rows of one slide's diversity sample (none for a slide without tissue)."""
    if entry.n == 0:
        return np.zeros(0, np.int64)
    return sample_slide(entry.embeddings(), m, diversity=diversity, seed=seed)


@contextmanager
def _pool(workers: int):
    """``workers`` spawned processes of one torch thread each, or None for this process."""
    if workers < 1:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a process that ran OpenMP
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        yield pool


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # the workers share the cores: one thread each


def cluster_stores(
    store_roots: list[str | Path],
    out: str | Path,
    *,
    samples_per_slide: int = 1000,
    diversity: float = 0.5,
    levels: tuple[int, ...] = DEFAULT_LEVELS,
    options: KMeansOptions | None = None,
    progress: bool = True,
    workers: int = 0,
) -> Phenotypes:
    """Sample every slide (in ``workers`` processes, 0: this one), fit phenotypes, build the
    merge tree, save to ``out``."""
    options = options or KMeansOptions(n_phenotypes=max(levels))
    stores = open_stores(list(store_roots))
    check_finite(e for s in stores for e in s.entries())  # before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path, rows = build_sample(
        stores, out, samples_per_slide, diversity, options.seed, progress, workers
    )
    total = sum(r["sampled"] for r in rows)
    if total == 0:
        raise InputError(
            f"no tissue patch in any slide of {[str(s.root) for s in stores]}: check the slides "
            "or lower --min-tissue when embedding"
        )
    dim = stores[0].embed_dim
    sample = np.memmap(path, np.float16, "r", shape=(total, dim))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = HierarchicalKMeans(options).fit(sample)
    notes = [str(w.message) for w in caught if "phenotypes" in str(w.message)]
    for note in notes:
        print(f"htd discover cluster: note: {note}", file=sys.stderr)
    tree, perm = PhenotypeTree.build(model.centers_, model.counts_, levels)
    phenotypes = Phenotypes(
        centers=model.centers_[perm],
        tree=tree,
        encoder=stores[0].encoder,
        weights_id=stores[0].weights_id,
        info={
            "requested_phenotypes": options.n_phenotypes,
            "n_phenotypes": model.n_phenotypes_,
            "notes": notes,
            "counts": model.counts_[perm].tolist(),
            "coarse_cluster": model.coarse_[perm].tolist(),
            "inertia": model.inertia_,
            "n_sampled": total,
            "samples_per_slide": samples_per_slide,
            "diversity": diversity,
            "kmeans": asdict(options),
            "n_stores": len(stores),  # not their paths: outputs name no file or folder
            "embed_dim": dim,
        },
    )
    atomic_write_json(out / "sample.json", {"slides": rows, "total": total})
    phenotypes.save(out)
    return phenotypes
