"""The TCGA-scale plan of discovery: slides per GPU-hour (teacher vs distilled student) and the
memory of clustering 11,765 slides x 1,000 sampled patches at d = 1536.

Measured here, on CPU, on real patches of ``../shared/data/slides`` (read outside the timing):
  - seconds per patch: reading a patch from the slide (tiatoolbox), the FID Inception teacher
    (real weights, 299 px), the distilled ViT-small student at 64 px; torch's FLOP counter
    per patch for those and for UNI2-h (ViT-H/14 at 224 px, d = 1536: the TCGA-scale teacher;
    its architecture with random weights, FLOPs only, as no weights can be downloaded here);
  - peak RSS of htd's clustering + assignment of an N x 1536 float16 memory-mapped file at two
    N (``--rss-rows``): constant in N shows memory does not grow with the number of slides.
Extrapolated (printed with their assumptions): slides per GPU-hour = effective GPU FLOP/s
x 3600 / (FLOPs per patch x patches per slide), with ``--gpu-tflops`` effective (default 200
TFLOP/s: about 20 % of an H100's dense bf16 peak, typical of batched ViT inference), and the
on-disk and in-RAM sizes of clustering 11,765 x 1,000 x 1536.

Run: ``python benchmarks/tcga_scale_plan.py`` (a few minutes on 2 cores; numbers under load
are not official: report ``uptime`` beside them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_discovery import flops_per_patch, per_patch_seconds  # noqa: E402

SLIDES, PATCHES_PER_SLIDE, DIM = 11_765, 1_000, 1536


def main() -> int:
    import torch

    from htd_core import create
    from htd_core.data import shared_data_dir
    from htd_plugins.slides import Slide

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=32)
    ap.add_argument("--patches-per-slide", type=int, default=15_000,
                    help="tissue patches of a TCGA diagnostic slide at 0.5 um/px, 224 px")  # fmt: skip
    ap.add_argument("--gpu-tflops", type=float, default=200.0, help="effective GPU TFLOP/s")
    ap.add_argument("--rss-rows", type=int, nargs="*", default=[100_000, 400_000])
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child[0], int(args.rss_child[1]))
    torch.set_num_threads(1)
    slide = Slide(shared_data_dir(required=True) / "slides" / "TCGA-CR-7395-01A-01-TS1.svs", 2.0)
    xy = [(1000 + 300 * (i % 8), 800 + 300 * (i // 8)) for i in range(args.patches)]
    read = lambda: [slide.read_level0(x, y, 224, 0.5 * 4) for x, y in xy]  # noqa: E731
    patches = torch.from_numpy(np.stack(read()))  # 224 px at 2 um/px (the test slide's base)
    small = torch.from_numpy(np.stack([slide.read_level0(x, y, 64, 4.0) for x, y in xy]))
    rows = {"read 224 px patch (tiatoolbox)": (per_patch_seconds(read, args.patches, 1), None)}
    teacher = create("encoders", "inception_fid")
    rows["teacher inception_fid (299 px)"] = (
        per_patch_seconds(lambda: teacher(patches, batch_size=32), args.patches, 1),
        flops_per_patch(lambda: teacher(patches[:2], batch_size=2), 2),
    )
    uni2 = create("encoders", "uni2_h", weights="random")
    rows["teacher uni2_h (224 px, d=1536; FLOPs only)"] = (
        None, flops_per_patch(lambda: uni2(patches[:1], batch_size=1), 1),
    )  # fmt: skip
    student = _student()
    rows["student vit_small @ 64 px"] = (
        per_patch_seconds(lambda: student(small), args.patches, 3),
        flops_per_patch(lambda: student(small[:2]), 2),
    )
    print(f"{'per patch':48s} {'CPU s (1 thread)':>16s} {'GFLOPs':>8s} {'slides/GPU-h':>13s}")
    for name, (sec, flops) in rows.items():
        per_hour = (
            args.gpu_tflops * 1e12 * 3600 / (flops * args.patches_per_slide) if flops else None
        )
        print(f"{name:48s} {_fmt(sec, '.4f'):>16s} {_fmt(flops and flops / 1e9, '.2f'):>8s} "
              f"{_fmt(per_hour, '.1f'):>13s}")  # fmt: skip
    print(f"(slides/GPU-h: {args.gpu_tflops:g} TFLOP/s effective, {args.patches_per_slide} patches "
          f"per slide; patch reading is CPU work beside it: "
          f"{rows['read 224 px patch (tiatoolbox)'][0] * args.patches_per_slide / 60:.1f} "
          f"CPU-min per slide here)")  # fmt: skip
    sample = SLIDES * PATCHES_PER_SLIDE * DIM * 2
    print(f"clustering {SLIDES} slides x {PATCHES_PER_SLIDE} patches at d={DIM}: sample.f16 "
          f"{sample / 2**30:.1f} GiB on disk (memory-mapped); in RAM: fit sample 25,600 x {DIM} "
          f"float32 = {25_600 * DIM * 4 / 2**20:.0f} MiB, one streamed chunk 16,384 x {DIM} "
          f"float32 = {16_384 * DIM * 4 / 2**20:.0f} MiB, centroids "
          f"{100 * DIM * 4 / 2**20:.1f} MiB")  # fmt: skip
    for n in args.rss_rows:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.f16"
            rng = np.random.default_rng(0)
            centres = rng.normal(0, 3, (150, DIM)).astype(np.float32)
            with path.open("wb") as fh:
                for start in range(0, n, 20_000):
                    m = min(20_000, n - start)
                    x = centres[rng.integers(0, 150, m)] + rng.normal(0, 1, (m, DIM))
                    x.astype(np.float16).tofile(fh)
            out = subprocess.run([sys.executable, __file__, "--rss-child", str(path), str(n)],
                                 capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        print(f"peak RSS, clustering + assigning {n} x {DIM} float16 memmap "
              f"({n * DIM * 2 / 2**30:.2f} GiB): {out[0]} MiB ({out[1]} s)")  # fmt: skip
    return 0


def _student():
    import timm
    import torch

    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=100,
                              img_size=64).eval()  # fmt: skip

    def run(x):
        with torch.inference_mode():
            return model(x.permute(0, 3, 1, 2).float().div(255))

    return run


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def rss_child(path: str, n: int) -> int:
    """Child: cluster + assign the memmap; print peak RSS (MiB, VmHWM) and seconds."""
    from htd_plugins.discovery.kmeans import HierarchicalKMeans

    x = np.memmap(path, np.float16, "r", shape=(n, DIM))
    t = time.perf_counter()
    HierarchicalKMeans().fit(x).predict(x)
    seconds = time.perf_counter() - t
    hwm = next(
        ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM")
    )
    print(f"{int(hwm.split()[1]) / 1024:.0f} {seconds:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
