"""Embed-stage throughput: the one-process path against the Dask engine, side by side.

The same slides (a real slide linked under ``--slides`` names, so ``--slides`` ids) are
embedded into fresh stores, in one process, repeatedly and in alternating order:
  - ``process``: :func:`htd_plugins.discovery.embed.embed_slides` here, 1 torch thread,
    tiles read in this process (``--workers 0``);
  - ``dask-W``: :func:`htd_plugins.discovery.engine_run.embed_on_cluster` on a local cluster of
    W worker processes (1 torch thread per task), started once and timed without its start
    (given separately: it is paid once per run).
Each peer first makes one untimed warm-up run (the workers build the encoder, the slide file
is cached), as a long run amortises both.
Reported per peer: median wall seconds over ``--repeats``, patches/s, patches/s per core used
(1 for ``process``, W for ``dask-W``), the ratio to ``process``, the CPU seconds of the run
(this process, which is also the client and the local scheduler, plus the workers) and
patches per CPU second (the per-core figure least changed by other jobs), and the largest
difference of the stored features from the ``process`` store (0 expected). The load average
is printed before and after: wall times taken while other jobs run are not official.

Small check (under a minute on 2 cores)::

    python benchmarks/bench_embed_engine.py --encoder efficientnet_lite0 --mpp 8 --slides 2 \\
        --dask-workers 2 --repeats 1

Full timed run (alone on the machine; about 10 minutes on 2 cores: 1,276 patches per pass,
4 passes per peer with the warm-up)::

    python benchmarks/bench_embed_engine.py \
        --slide ../shared/data/slides/TCGA-CR-7395-01A-01-TS1.svs --slide-mpp 2.0 --mpp 4 \
        --patch-size 64 --encoder efficientnet_lite0 --slides 2 --dask-workers 1,2 \
        --repeats 3 --tiles-per-task 256 --json runs/bench_embed_engine.json

A cheap encoder shows the engine's own cost best; with ``--encoder inception_fid`` (the
teacher, about 0.3 s of CPU per patch) use ``--slides 1 --dask-workers 2 --repeats 2``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def slide_copies(source: Path, n: int, folder: Path) -> list[Path]:
    """``n`` names for one slide file (symbolic links): ``n`` slide ids, the same pixels."""
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        link = folder / f"bench{i}{source.suffix}"
        link.symlink_to(source.resolve())
        out.append(link)
    return out


def main() -> None:
    from htd_core import create
    from htd_core.data import shared_data_dir
    from htd_plugins.discovery import tiatoolbox_sample_image
    from htd_plugins.discovery.embed import embed_slides
    from htd_plugins.discovery.engine import EngineOptions, open_client
    from htd_plugins.discovery.engine_run import embed_on_cluster
    from htd_plugins.discovery.patches import GridOptions
    from htd_plugins.discovery.store import EmbeddingStore

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--slide", type=Path, help="slide file (None: CMU-1-Small-Region of the "
                   "shared data, else tiatoolbox's sample H&E tile)")  # fmt: skip
    p.add_argument("--slide-mpp", type=float, default=0.5, help="for slides without mpp")
    p.add_argument("--slides", type=int, default=2, help="slide ids (names of the one slide)")
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--mpp", type=float, default=2.0, help="read resolution, um/px")
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dask-workers", default="2", help="local cluster sizes, comma-separated")
    p.add_argument("--tiles-per-task", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    source = args.slide
    if source is None:
        data = shared_data_dir()
        cmu = None if data is None else data / "slides" / "CMU-1-Small-Region.svs"
        source = cmu if cmu is not None and cmu.is_file() else tiatoolbox_sample_image()
    sizes = [int(v) for v in args.dask_workers.split(",") if v.strip()]
    options = GridOptions(read_mpp=args.mpp, patch_size=args.patch_size, slide_mpp=args.slide_mpp)
    encoder = create("encoders", args.encoder)
    factory = functools.partial(create, "encoders", args.encoder)
    identity = {"encoder": encoder.name, "weights_id": encoder.weights_id,
                "embed_dim": encoder.embed_dim, "read_mpp": args.mpp,
                "patch_size": args.patch_size}  # fmt: skip
    print(f"before: {load()}; {os.cpu_count()} CPUs; slide {source.name} x {args.slides}; "
          f"encoder {args.encoder}; {args.patch_size} px at {args.mpp} um/px", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench_embed_engine_"))
    try:
        slides = slide_copies(source, args.slides, work / "slides")
        times: dict[str, list[float]] = {"process": []} | {f"dask-{w}": [] for w in sizes}
        starts: dict[str, float] = {}
        cpu_times: dict[str, list[float]] = {peer: [] for peer in times}
        stores: dict[str, EmbeddingStore] = {}
        with contextlib.ExitStack() as stack:
            clients = {}
            for w in sizes:  # one cluster per size for the whole run, started untimed
                t = time.perf_counter()
                engine = EngineOptions(local_workers=w, tiles_per_task=args.tiles_per_task)
                clients[f"dask-{w}"] = (engine, stack.enter_context(open_client(engine)))
                clients[f"dask-{w}"][1].wait_for_workers(w)
                starts[f"dask-{w}"] = time.perf_counter() - t

            def cpu(peer: str) -> float:
                """CPU seconds so far of this process and (dask) the peer's worker processes."""
                import psutil

                pids = [] if peer == "process" else list(clients[peer][1].run(os.getpid).values())
                times = [psutil.Process(pid).cpu_times() for pid in pids]
                return time.process_time() + sum(t.user + t.system for t in times)

            def embed(peer: str, store: EmbeddingStore) -> None:
                if peer == "process":
                    embed_slides(store, slides, encoder, options, batch_size=args.batch_size,
                                 progress=False)  # fmt: skip
                    return
                engine, client = clients[peer]
                embed_on_cluster(store, slides, factory, options, engine, client=client,
                                 batch_size=args.batch_size, progress=False)  # fmt: skip

            for peer in times:  # warm-up (untimed): encoders built on the workers, files cached
                embed(peer, EmbeddingStore(work / f"warm-{peer}", identity))
            for r in range(args.repeats):
                for peer in list(times) if r % 2 == 0 else list(reversed(times)):
                    store = EmbeddingStore(work / f"{peer}-{r}", identity)
                    stores.setdefault(peer, store)
                    c, t = cpu(peer), time.perf_counter()
                    embed(peer, store)
                    times[peer].append(time.perf_counter() - t)
                    cpu_times[peer].append(cpu(peer) - c)
                print(f"repeat {r + 1}: "
                      + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)  # fmt: skip
        reference = stores["process"]
        patches = sum(reference.entry(s).n for s in reference.slide_ids())
        base = statistics.median(times["process"])
        rows = []
        for peer, values in times.items():
            median = statistics.median(values)
            cores = 1 if peer == "process" else int(peer.split("-")[1])
            diff = max(
                float(np.abs(np.asarray(stores[peer].entry(s).embeddings(), np.float32)
                             - np.asarray(reference.entry(s).embeddings(), np.float32)).max())
                for s in reference.slide_ids()
            )  # fmt: skip
            row = {"peer": peer, "patches": patches, "repeats": len(values),
                   "median_s": round(median, 3), "patches_per_s": round(patches / median, 2),
                   "patches_per_s_per_core": round(patches / median / cores, 2),
                   "speedup_vs_process": round(base / median, 3), "max_abs_diff": diff,
                   "cpu_s": round(statistics.median(cpu_times[peer]), 2),
                   "patches_per_cpu_s": round(patches / statistics.median(cpu_times[peer]), 2),
                   "cluster_start_s": round(starts[peer], 2) if peer in starts else None}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        after = load()
        print(f"after: {after}", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"rows": rows, "load_after": after}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
