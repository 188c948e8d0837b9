"""The TCGA-scale plan of discovery, measured: embed throughput per CPU core (and per GPU where
there is one), clustering time, extrapolated to the paper's 634 M patches of 11,765 slides
and its 11.8 M x 1024 clustering set.

Measured here, each step timed on its own (``--threads``, default 1: per CPU core):
  - *reading*: tissue patches of the real slides of ``../shared/data/slides`` read as
    ``htd discover embed`` reads them (``plan_slide`` + ``PatchDataset``: tiatoolbox, the
    embed grid's read mpp and patch size), a run of tissue cells in grid order from the
    middle of the slide, each read once (so neighbours share the slide's tile cache as in
    embed); and the per-slide planning (thumbnail, tissue mask);
  - *encoding*: those patches through the teachers (``--teachers``), called as ``embed``
    calls them (``encoder(batch, batch_size=32)``, fp32): ``inception_fid`` (discovery's
    default, real weights), ``uni`` (ViT-L/16, 1024-d: the paper's embedding width) and
    ``uni2_h`` (ViT-H/14, 1536-d), the two with random weights (no download here; the cost
    is the same); torch's FLOP count per patch of each;
  - *GPU probe*: the same teachers on ``cuda`` (fp32 as ``embed`` runs them, and under bf16
    autocast) when torch sees a GPU; otherwise it says so and the GPU rows are FLOP
    estimates at ``--gpu-tflops`` effective.
Given (from ``benchmarks/bench_kmeans_faiss.py``): ``--cluster-seconds`` of one clustering
of ``--cluster-rows`` x 1024 rows; scaled linearly in rows to 11.8 M (an upper bound: the fit
on its sample is constant in N, only the streamed pass grows).

Run: ``python benchmarks/tcga_scale_plan.py --cluster-seconds S`` (3-6 min at 1 thread;
``--teachers inception_fid`` and ``--read-patches 32`` for a one-minute check).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_discovery import flops_per_patch, per_patch_seconds  # noqa: E402

PAPER_PATCHES, PAPER_SLIDES, PAPER_DAYS = 634_000_000, 11_765, 90  # "3 months on one A100"
CLUSTER_ROWS, CLUSTER_DIM = 11_765 * 1_000, 1024
#: Slides and how embed reads them here: (file, read mpp, slide mpp for slides without one).
SLIDES = (("CMU-1-Small-Region.svs", 0.5, None), ("TCGA-CR-7395-01A-01-TS1.svs", 2.0, 2.0))


def read_rates(n: int, patch: int) -> tuple[np.ndarray, float]:
    """Read up to ``n`` tissue patches per slide as embed does, printing the rate of each;
    returns (the patches, mean seconds per patch over the slides)."""
    from htd_core.data import shared_data_dir
    from htd_plugins.discovery.patches import GridOptions, PatchDataset, plan_slide

    root, out, rates = shared_data_dir(required=True) / "slides", [], []
    for name, mpp, slide_mpp in SLIDES:
        t = time.perf_counter()
        slide, grid, coords = plan_slide(
            root / name, GridOptions(read_mpp=mpp, patch_size=patch, slide_mpp=slide_mpp)
        )
        plan = time.perf_counter() - t
        start = max(0, (len(coords) - n) // 2)  # a run of cells in grid order, as embed reads
        pick = coords[start : start + n]
        dataset = PatchDataset(root / name, grid, pick, slide)
        t = time.perf_counter()
        out += [dataset[i] for i in range(len(pick))]
        rates.append((time.perf_counter() - t) / len(pick))
        print(f"read {patch} px at {mpp} um/px, {name.split('-')[0]} slide ({len(pick)} of "
              f"{len(coords)} tissue cells): {rates[-1] * 1e3:.1f} ms/patch = "
              f"{1 / rates[-1]:.0f} patches/s/core; planning the slide {plan:.1f} s")  # fmt: skip
    return np.stack(out), float(np.mean(rates))


def diversity_seconds(rows: int, dim: int = CLUSTER_DIM) -> float:
    """Seconds of ``cluster``'s diversity sampling (1,000 of ``rows`` patches, diversity 0.5)
    of one slide: its cost depends only on the shape, so the embeddings are synthetic."""
    from htd_plugins.discovery.diversity import sample_slide

    emb = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)
    emb = emb.astype(np.float16)
    t = time.perf_counter()
    sample_slide(emb, 1000, diversity=0.5, seed=0)
    return time.perf_counter() - t


def probe_gpu(encoder, patches: np.ndarray, batch: int) -> dict[str, float] | None:
    """Patches/s of ``encoder`` on cuda, fp32 and bf16 autocast; None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    encoder.to("cuda")
    x = torch.from_numpy(np.resize(patches, (batch * 4, *patches.shape[1:])))
    rates = {}
    for mode in ("fp32", "bf16"):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
            encoder(x[:batch], batch_size=batch)  # warm up
            t = time.perf_counter()
            encoder(x, batch_size=batch)  # returns on the CPU: synchronised
            rates[mode] = len(x) / (time.perf_counter() - t)
    encoder.to("cpu")
    return rates


def main() -> int:
    import torch

    from htd_core import create

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: per CPU core)")
    ap.add_argument("--read-patches", type=int, default=96, help="patches read per slide")
    ap.add_argument("--encode-patches", type=int, default=32, help="patches per teacher timing")
    ap.add_argument("--teachers", default="inception_fid,uni,uni2_h")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gpu-batch", type=int, default=128)
    ap.add_argument("--gpu-tflops", type=float, default=200.0,
                    help="effective GPU TFLOP/s of the estimate without a GPU")  # fmt: skip
    ap.add_argument("--diversity-rows", type=int, default=PAPER_PATCHES // PAPER_SLIDES,
                    help="patches of the slide whose diversity sampling is timed")  # fmt: skip
    ap.add_argument("--node-cores", type=int, default=16, help="CPU cores beside each GPU")
    ap.add_argument("--cluster-seconds", type=float, help="bench_kmeans_faiss.py's htd median")
    ap.add_argument("--cluster-rows", type=int, default=1_000_000, help="its --n")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
    print(f"uptime before: {uptime()}; {args.threads} torch thread(s)")
    patches, read_s = read_rates(args.read_patches, 224)
    rows = []
    for name in [t.strip() for t in args.teachers.split(",") if t.strip()]:
        enc = create("encoders", name, **({} if name == "inception_fid" else {"weights": "random"}))
        n = min(args.encode_patches, len(patches)) if name == "inception_fid" else 2
        x = torch.from_numpy(patches[:: max(1, len(patches) // n)][:n])
        sec = per_patch_seconds(lambda x=x, enc=enc: enc(x, batch_size=32), n, args.repeats)
        flops = flops_per_patch(lambda x=x, enc=enc: enc(x[:1], batch_size=1), 1)
        rows.append((name, enc.embed_dim, sec, flops, probe_gpu(enc, patches, args.gpu_batch)))
    diversity = diversity_seconds(args.diversity_rows)
    print(f"uptime after: {uptime()}")
    print(f"\n{'teacher':14s} {'d':>5s} {'CPU s/patch':>12s} {'patches/s/core':>15s} "
          f"{'GFLOP/patch':>12s} {'GPU patches/s':>24s} {'634 M patches':>26s}")  # fmt: skip
    nodes = []
    for name, dim, sec, flops, gpu in rows:
        if gpu:
            rate, how = gpu["bf16"], f"{gpu['fp32']:.0f} fp32, {gpu['bf16']:.0f} bf16"
        else:
            rate, how = (
                args.gpu_tflops * 1e12 / flops,
                f"~{args.gpu_tflops * 1e12 / flops:.0f} (est.)",
            )
        cost = (f"{PAPER_PATCHES * sec / 3600:,.0f} core-h | "
                f"{PAPER_PATCHES / rate / 3600:,.0f} GPU-h")  # fmt: skip
        print(f"{name:14s} {dim:5d} {sec:12.3f} {1 / sec:15.2f} {flops / 1e9:12.1f} {how:>24s} "
              f"{cost:>26s}")  # fmt: skip
        nodes.append((name, rate))
    gpu_note = "measured on " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else (
        "no GPU here (this task was lent no GPU): GPU figures are FLOPs / "
        f"{args.gpu_tflops:g} TFLOP/s effective, an assumption, not a measurement")  # fmt: skip
    print(f"GPU: {gpu_note}")
    print(f"reading {PAPER_PATCHES / 1e6:.0f} M patches at {read_s * 1e3:.1f} ms/patch (mean of "
          f"the slides above): {PAPER_PATCHES * read_s / 3600:,.0f} CPU core-hours, beside the "
          f"encoder; {PAPER_PATCHES / PAPER_SLIDES:,.0f} patches per slide on average")  # fmt: skip
    reading = args.node_cores / read_s
    for name, rate in nodes:  # readers and the GPU work side by side: the slower sets the pace
        pace = min(reading, rate)
        print(f"one GPU + {args.node_cores} reading cores, {name}: {pace:,.0f} patches/s "
              f"({'reading' if reading < rate else 'the GPU'} sets the pace) -> "
              f"{PAPER_PATCHES / pace / 86400:,.1f} node-days for {PAPER_PATCHES / 1e6:.0f} M")  # fmt: skip
    paper = PAPER_PATCHES / (PAPER_DAYS * 86400)
    print(f"the paper's cost, {PAPER_DAYS} days on one A100: {PAPER_DAYS * 24:,} GPU-hours = "
          f"{paper:.0f} patches/s")  # fmt: skip
    size = CLUSTER_ROWS * CLUSTER_DIM
    line = (f"clustering {CLUSTER_ROWS / 1e6:.1f} M x {CLUSTER_DIM}: {size * 2 / 1e9:.1f} GB "
            f"as float16 (sample.f16, memory-mapped), {size * 4 / 1e9:.1f} GB as float32")  # fmt: skip
    if args.cluster_seconds:
        scaled = args.cluster_seconds * CLUSTER_ROWS / args.cluster_rows
        line += (f"; {args.cluster_seconds:.0f} s at {args.cluster_rows:,} rows -> at most "
                 f"{scaled / 3600:.2f} h (linear in rows)")  # fmt: skip
    else:
        line += "; time: pass --cluster-seconds from bench_kmeans_faiss.py"
    print(line)
    per_slide = diversity * PAPER_PATCHES / PAPER_SLIDES / args.diversity_rows
    print(f"diversity sampling (cluster's first step, one slide after another): {diversity:.1f} s "
          f"for a slide of {args.diversity_rows:,} patches -> {per_slide * PAPER_SLIDES / 3600:,.1f}"
          f" core-hours for {PAPER_SLIDES:,} slides, reading {PAPER_PATCHES * CLUSTER_DIM * 2 / 1e12:.1f}"
          f" TB of float16 embeddings")  # fmt: skip
    print("assumptions: patches as read here (TCGA diagnostic slides are 0.25 um/px at level "
          "0: reading 0.5 um/px adds a downsample); reading runs in --workers processes beside "
          "the encoder and scales with cores; the GPU rate is bf16 where measured; clustering "
          "time linear in rows; storage and network not limiting")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
