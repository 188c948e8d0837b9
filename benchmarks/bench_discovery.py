"""Per-patch cost of pseudo-map labelling: teacher encoder + nearest centroid vs distilled ViT-small.

Both paths label the same real patches of ``../shared/data/slides/CMU-1-Small-Region.svs``
(read once, outside the timing) in one run:
  - teacher: the foundation encoder (default ``inception_fid``, real weights: resize to 299,
    2048-d features) then the nearest of the phenotype centroids;
  - student: the distilled ``vit_small_patch16_224`` at its input size (default 64 px) then argmax.
Reported: median seconds per patch over repeats, forward FLOPs per patch (torch's FLOP counter:
machine-independent), and the student's cost relative to the teacher (paper: -85%).
With ``runs/discovery/{phenotypes,student}`` (written by examples/discovery_figure.py) the
trained student and real centroids are used; otherwise a randomly initialised student and
random centroids of the same shapes (the cost is the same; labels are not).

Run: ``python benchmarks/bench_discovery.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_patches(n: int, size: int) -> np.ndarray:
    from htd_core.data import shared_data_dir
    from htd_plugins.discovery.patches import GridOptions, PatchDataset, plan_slide

    root = shared_data_dir(required=True)
    slide = root / "slides" / "CMU-1-Small-Region.svs"
    opened, grid, coords = plan_slide(
        slide, GridOptions(read_mpp=2.0, patch_size=size, stride=size // 2)
    )
    dataset = PatchDataset(slide, grid, coords, opened)
    return np.stack([dataset[i] for i in range(min(n, len(dataset)))])


def per_patch_seconds(fn, n: int, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


def flops_per_patch(fn, n: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="inception_fid")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "discovery")
    ap.add_argument("--patches", type=int, default=64)
    ap.add_argument("--patch-size", type=int, default=64, help="patch side read at 2 um/px")
    ap.add_argument("--input-size", type=int, default=64, help="student input (untrained case)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import torch

    from htd_core import create
    from htd_plugins.discovery.classifier import StudentClassifier, build_student
    from htd_plugins.discovery.distill import resize_uint8
    from htd_plugins.discovery.streaming import assign

    if args.threads:
        torch.set_num_threads(args.threads)
    patches = real_patches(args.patches, args.patch_size)
    n = len(patches)
    encoder = create("encoders", args.encoder)
    try:
        from htd_plugins.discovery.clustering import Phenotypes

        centers = Phenotypes.load(args.runs / "phenotypes").centers
        student = StudentClassifier.load(args.runs / "student")
        trained = "trained student and real centroids from " + str(args.runs)
    except Exception:
        centers = (
            np.random.default_rng(0).standard_normal((100, encoder.embed_dim)).astype(np.float32)
        )
        student = StudentClassifier(
            build_student(100, args.input_size), {"input_size": args.input_size, "num_classes": 100}
        )
        trained = "UNTRAINED student and random centroids (same cost, meaningless labels)"

    def teacher() -> np.ndarray:
        feats = encoder(patches, batch_size=32).numpy()
        return assign(feats, centers)[0]

    def pupil() -> np.ndarray:
        return student.predict(resize_uint8(patches, student.input_size), batch_size=32)

    print(
        f"{n} real patches {args.patch_size} px at 2 um/px; {torch.get_num_threads()} torch threads; {trained}"
    )
    t_teacher = per_patch_seconds(teacher, n, args.repeats)
    t_student = per_patch_seconds(pupil, n, args.repeats)
    f_teacher = flops_per_patch(lambda: encoder(patches[:8], batch_size=8), 8)
    f_student = flops_per_patch(
        lambda: student.logits(resize_uint8(patches[:8], student.input_size)), 8
    )
    agree = float((teacher() == pupil()).mean())
    print(
        f"teacher {encoder.label} + nearest centroid: {t_teacher * 1e3:8.2f} ms/patch  {f_teacher / 1e9:6.2f} GFLOP/patch"
    )
    print(
        f"student vit_small_patch16_224 @ {student.input_size} px:      {t_student * 1e3:8.2f} ms/patch  {f_student / 1e9:6.2f} GFLOP/patch"
    )
    print(f"student cost vs teacher: time {100 * (t_student / t_teacher - 1):+.1f}%, "
          f"FLOPs {100 * (f_student / f_teacher - 1):+.1f}% (paper: -85%); "
          f"teacher/student k=100 agreement on these patches {agree:.3f} (some were training patches; "
          "held-out top-1 is in runs/discovery/student/classifier.json)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
