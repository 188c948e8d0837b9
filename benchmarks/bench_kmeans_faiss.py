"""Clustering at the paper's scale: htd's streaming hierarchical k-means vs faiss k-means.

On one N x D float32 memory-mapped file (default 1,000,000 x 1024, 4 GiB on disk: the
memmap keeps the input out of the compared RSS), 100 clusters, each run in its own child
process (clean peak RSS), ``--repeats`` times, interleaved:

  - ``htd``: ``HierarchicalKMeans`` with default options (backend ``htd``: coarse k-means,
    D'Hondt split, split-merge on a fit sample of 256 rows per cluster, then one streamed
    Lloyd pass over all rows), what ``htd discover cluster`` runs;
  - ``faiss``: the same with ``backend="faiss"`` (one flat faiss k-means, 25 iterations, on
    the same fit sample; the same streamed pass): ``--kmeans-backend faiss``;
  - ``faiss-full``: plain ``faiss.Kmeans(niter=25)`` trained on all N rows (no subsampling;
    faiss reads the whole file, so its pages count in its RSS), for reference.

Reported per variant: median (min-max) seconds of the fit, median peak RSS (VmHWM, MiB) and
its rise over the child's RSS after imports, and the inertia, defined the same for every
variant: the sum over all N rows of the squared distance to the nearest centre (computed
after the timing, streamed). Ratios are to ``htd``. ``uptime`` is printed before and after:
numbers taken beside other work are not official.

Data: ``--store`` (an embedding store: its real embeddings projected to D and tiled with
jitter, as ``bench_clustering.py``) or, by default, a *synthetic* mixture of 150 anisotropic
Gaussians with Dirichlet-distributed sizes (``bench_clustering.mixture_base``), tiled with
jitter: realistic enough for time and memory, not for the quality of phenotypes.

Run (quiet machine; about 10-15 min at the default size on 2 cores, most of it faiss-full):
``python benchmarks/bench_kmeans_faiss.py --threads 2 --data /tmp/kmeans_1m.f32``
Check (a minute): ``python benchmarks/bench_kmeans_faiss.py --n 20000 --repeats 1``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_clustering import mixture_base, peak_rss_mib, real_base, tiled  # noqa: E402

VARIANTS = ("htd", "faiss", "faiss-full")


def write_data(path: Path, n: int, dim: int, store: Path | None) -> str:
    """Write the N x D float32 file unless it is already there with that size; describe it."""
    base = real_base(store, dim) if store else None
    what = (
        f"real embeddings of {store}, tiled with jitter"
        if base is not None
        else "synthetic mixture of 150 anisotropic Gaussians, tiled with jitter"
    )
    if path.exists() and path.stat().st_size == n * dim * 4:
        return what + f" (reused {path})"
    base = mixture_base(dim) if base is None else base
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as fh:
        for start in range(0, n, 50_000):
            tiled(base, min(50_000, n - start), start).astype(np.float32).tofile(fh)
    tmp.replace(path)
    return what


def child(variant: str, path: str, n: int, dim: int, k: int, seed: int, threads: int) -> None:
    """One fit in this process: print a JSON line of seconds, peak RSS and inertia."""
    import faiss
    import torch

    from htd_plugins.discovery.kmeans import HierarchicalKMeans, KMeansOptions
    from htd_plugins.discovery.streaming import assign_all

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    x = np.memmap(path, np.float32, "r", shape=(n, dim))
    before = peak_rss_mib()
    t = time.perf_counter()
    if variant == "faiss-full":
        km = faiss.Kmeans(dim, k, niter=25, seed=seed, max_points_per_centroid=n,
                          min_points_per_centroid=1, gpu=faiss.get_num_gpus() > 0)  # fmt: skip
        km.train(x)
        centers = np.asarray(km.centroids, np.float32)
    else:
        backend = "faiss" if variant == "faiss" else "htd"
        opts = KMeansOptions(n_phenotypes=k, seed=seed, backend=backend)
        centers = HierarchicalKMeans(opts).fit(x).centers_
    seconds = time.perf_counter() - t
    peak = peak_rss_mib()
    inertia = float(assign_all(x, centers)[1].sum(dtype=np.float64))
    print(json.dumps({"seconds": seconds, "peak": peak, "before": before, "inertia": inertia}))


def run_child(variant: str, path: Path, args: argparse.Namespace, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(path), str(args.n), str(args.dim),
           str(args.k), str(seed), str(args.threads)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="rows")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k", type=int, default=100, help="clusters")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument("--store", type=Path, help="embedding store (default: synthetic mixture)")
    ap.add_argument("--data", type=Path, help="the float32 file (kept; reused if its size fits)")
    ap.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        v, path, n, dim, k, seed, threads = args.child
        child(v, path, int(n), int(dim), int(k), int(seed), int(threads))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if bad := [v for v in variants if v not in VARIANTS]:
        ap.error(f"--variants: unknown {bad}; use some of {list(VARIANTS)}")
    import faiss

    print(f"uptime before: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.data or Path(tmp) / "x.f32"
        what = write_data(path, args.n, args.dim, args.store)
        print(f"data: {args.n} x {args.dim} float32 memmap ({args.n * args.dim * 4 / 2**30:.2f} "
              f"GiB), {what}; k = {args.k}; {args.threads} thread(s) of {os.cpu_count()} CPUs; "
              f"faiss {faiss.__version__}, {faiss.get_num_gpus()} GPU(s)")  # fmt: skip
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in variants:  # interleaved, so a change of load hits every variant
                runs[v].append(run_child(v, path, args, seed=r))
                res = runs[v][-1]
                print(f"  repeat {r} {v:10s} {res['seconds']:8.1f} s  peak RSS "
                      f"{res['peak']:6.0f} MiB  inertia {res['inertia']:.6g}", flush=True)  # fmt: skip
    print(f"uptime after: {uptime()}")
    med = {v: {key: statistics.median(x[key] for x in rs) for key in rs[0]}
           for v, rs in runs.items()}  # fmt: skip
    ref = med.get("htd") or med[variants[0]]
    print(f"\n{'variant':11s} {'fit s (median, min-max)':>26s} {'peak RSS MiB':>13s} "
          f"{'rise MiB':>9s} {'inertia':>12s} {'time ratio':>10s} {'inertia ratio':>13s}")  # fmt: skip
    for v, m in med.items():
        times = [x["seconds"] for x in runs[v]]
        span = f"{m['seconds']:.2f} ({min(times):.2f}-{max(times):.2f})"
        print(f"{v:11s} {span:>26s} {m['peak']:13.0f} {m['peak'] - m['before']:9.0f} "
              f"{m['inertia']:12.6g} {m['seconds'] / ref['seconds']:10.2f} "
              f"{m['inertia'] / ref['inertia']:13.4f}")  # fmt: skip
    print(
        f"(ratios to {'htd' if 'htd' in med else variants[0]}; inertia: sum over all "
        f"{args.n} rows of the squared distance to the nearest centre; {args.repeats} repeats)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
