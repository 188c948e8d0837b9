"""Phenotype clustering: htd's hierarchical k-means vs scikit-learn ``KMeans(100)`` (defaults).

Side by side in one run, on the same 200k x 1024 float32 embeddings:
  - htd ``HierarchicalKMeans`` (default options: coarse k=10, D'Hondt split, split-merge,
    fit sample 25,600 rows = 256 per phenotype, one streamed Lloyd pass over all rows);
  - ``sklearn.cluster.KMeans(n_clusters=100, random_state=0)``, otherwise defaults.
Goal: >= 10x faster, inertia (sum of squared distances, both measured on all rows) within
1.10x of KMeans. Then peak RSS of htd's clustering + assignment of a 1M x 1024 float16
memory-mapped file (2 GB on disk), measured in a child process (target < 2 GB).

Data: *real* embeddings of real patches from an embedding store (default
``runs/discovery/store``, written by ``examples/discovery_figure.py``: FID Inception features
of the two slides in ../shared/data/slides), projected to 1024-d by a fixed Gaussian random
projection (the store's encoder is 2048-d), then tiled to the row count with per-dimension
Gaussian jitter of 0.1 x that dimension's standard deviation. Without a store: a documented
mixture of 150 anisotropic Gaussians of Dirichlet-distributed sizes (``--mixture``).

Run: ``python benchmarks/bench_clustering.py`` (minutes: the KMeans side dominates).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_base(store: Path, dim: int, seed: int = 0) -> np.ndarray | None:
    """All embeddings of a store projected to ``dim`` (float32), or None without a store."""
    from htd_plugins.discovery.store import EmbeddingStore

    if not (store / "store.json").exists():
        return None
    st = EmbeddingStore(store)
    rows = [np.asarray(e.embeddings(), np.float32) for e in st.entries() if e.n]
    if not rows:
        return None
    x = np.concatenate(rows)
    if x.shape[1] != dim:
        proj = np.random.default_rng(seed).standard_normal((x.shape[1], dim)).astype(np.float32)
        x = x @ (proj / np.sqrt(dim))
    print(f"data: {len(x)} real embeddings of store {store} ({st.info['encoder']}, "
          f"{st.info['embed_dim']}-d -> {dim}-d)")  # fmt: skip
    return x


def mixture_base(dim: int, seed: int = 0, components: int = 150, n: int = 20000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, rng.dirichlet(np.full(components, 0.5)))
    centres = rng.normal(0, 1, (components, dim))
    parts = [
        c + rng.normal(0, 1, (s, dim)) * rng.uniform(0.1, 0.6, dim)
        for c, s in zip(centres, sizes, strict=True)
    ]
    print(f"data: mixture of {components} anisotropic Gaussians in {dim}-d (no embedding store)")
    return np.concatenate(parts).astype(np.float32)


def tiled(base: np.ndarray, n: int, start: int = 0, seed: int = 1) -> np.ndarray:
    """Rows ``start .. start + n`` of the base tiled with jitter (deterministic per row)."""
    rng = np.random.default_rng([seed, start])
    idx = (np.arange(start, start + n) * 7919) % len(base)
    jitter = rng.standard_normal((n, base.shape[1]), dtype=np.float32) * (0.1 * base.std(0))
    return base[idx] + jitter


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(path: str, n: int, dim: int) -> None:
    """Child process: cluster + assign a float16 memmap; print peak RSS in MiB."""
    from htd_plugins.discovery.kmeans import HierarchicalKMeans

    before = peak_rss_mib()
    x = np.memmap(path, np.float16, "r", shape=(n, dim))
    t = time.perf_counter()
    model = HierarchicalKMeans().fit(x)
    labels = model.predict(x)
    seconds = time.perf_counter() - t
    peak = peak_rss_mib()
    print(f"{peak:.0f} {before:.0f} {seconds:.1f} {len(np.unique(labels))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=REPO / "runs" / "discovery" / "store")
    ap.add_argument("--mixture", action="store_true", help="use the Gaussian mixture, not a store")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--rss-n", type=int, default=1_000_000)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", nargs=3, metavar=("PATH", "N", "DIM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return 0

    from sklearn.cluster import KMeans

    from htd_plugins.discovery.kmeans import HierarchicalKMeans

    base = None if args.mixture else real_base(args.store, args.dim)
    base = mixture_base(args.dim) if base is None else base
    x = tiled(base, args.n)
    print(f"{args.n} x {args.dim} float32, {x.nbytes / 2**20:.0f} MiB; {os.cpu_count()} CPUs")

    t = time.perf_counter()
    ours = HierarchicalKMeans().fit(x)
    t_ours = time.perf_counter() - t
    inertia_ours = ours.inertia(x)
    print(f"htd HierarchicalKMeans: {t_ours:8.1f} s  inertia {inertia_ours:.6g}  "
          f"({ours.n_phenotypes_} phenotypes, {ours.swaps_} split-merge moves)")  # fmt: skip
    t = time.perf_counter()
    ref = KMeans(n_clusters=100, random_state=0).fit(x)
    t_ref = time.perf_counter() - t
    print(
        f"sklearn KMeans(100):    {t_ref:8.1f} s  inertia {ref.inertia_:.6g}  ({ref.n_iter_} iterations)"
    )
    speed, ratio = t_ref / t_ours, inertia_ours / ref.inertia_
    print(
        f"speed-up {speed:.1f}x (target >= 10x: {'met' if speed >= 10 else 'MISSED'}); "
        f"inertia ratio {ratio:.4f} (target <= 1.10: {'met' if ratio <= 1.10 else 'MISSED'})"
    )
    del x, ref

    if args.skip_rss:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emb.f16"
        with open(path, "wb") as fh:
            for start in range(0, args.rss_n, 50_000):
                tiled(base, min(50_000, args.rss_n - start), start).astype(np.float16).tofile(fh)
        size = path.stat().st_size / 2**30
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(path), str(args.rss_n), str(args.dim)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        peak, before, seconds, used = out.stdout.split()[-4:]
    print(f"memmap {args.rss_n} x {args.dim} float16 ({size:.1f} GiB on disk): fit + assign in "
          f"{float(seconds):.0f} s, peak RSS {float(peak):.0f} MiB (after imports {float(before):.0f} "
          f"MiB; target < 2048: {'met' if float(peak) < 2048 else 'MISSED'}); {used} phenotypes used")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
