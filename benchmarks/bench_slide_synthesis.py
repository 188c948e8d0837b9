"""Slide synthesis: windows per second, and the cost of blending windows on one latent canvas
vs generating the same number of independent patches (goal: ratio <= 1.3).

Both use the same ``small`` controlnet_ldm (random weights after one training step: speed
does not depend on training), the same conditions (each window's part of a blob layout with
crops from a bank), scheduler, steps and guidance, in one process, alternating:

- slide: ``generate_slide`` (windows blended at every step, conditions rebuilt per step,
  a checkpoint per step, tiled decode, pyramidal TIFF); its denoising loop is timed from the
  start to the last step's callback;
- independent: ``backbone.generate`` on the windows' conditions (one patch per window, same
  batch size), minus the time to decode those patches (measured apart), so both sides are
  denoising loops.

Prints seconds, window-steps per second, the ratio slide / independent per window-step, and
``uptime``'s load (numbers under load are not official).

    python benchmarks/bench_slide_synthesis.py [--size 384] [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def blobs(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(size * size // 3000):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(10, 30)]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384, help="slide side in px")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from htd_core import Pipeline
    from htd_core.testing import synthetic_sample
    from htd_core.types import TissueSample
    from htd_plugins.condition_builders import CropBank
    from htd_plugins.slide_synthesis import SlideLayout, generate_slide
    from htd_plugins.slide_synthesis.conditions import WindowConditions
    from htd_plugins.slide_synthesis.windows import WindowPlan

    classes = ("stroma", "gland")
    samples = [synthetic_sample(64, classes=classes, seed=s) for s in range(8)]
    samples = [TissueSample(s.image, s.mask, s.class_map, {**s.meta, "mpp": 2.0}) for s in samples]
    root = Path(tempfile.mkdtemp(prefix="htd-bench-slide-"))
    pipe = Pipeline(
        condition_builders=["semantic_map", {"name": "crop", "fixed_size": 24, "min_size": 4}],
        backbone={"name": "controlnet_ldm", "preset": "small"},
        stage_options={"generate": {"num_inference_steps": args.steps}},
    )
    pipe.fit(samples, steps=1, vae_steps=1, batch_size=2, progress=False, tensorboard=False)
    pipe.save_pretrained(root / "model")
    CropBank.from_samples(samples, size=24, min_size=4).save(root / "bank.safetensors")
    pipe = Pipeline.from_pretrained(
        root / "model", builder_options={"bank": str(root / "bank.safetensors")}
    )
    backbone = pipe.backbone
    # what generate_slide resolves too: the saved generate: defaults over GenerationOptions'
    options = pipe.generation_options(seed=0)
    layout = SlideLayout(blobs(args.size), backbone.class_map, 2.0)
    f, side = backbone.autoencoder.factor, backbone.image_size
    plan = WindowPlan.create(args.size // f, args.size // f, side // f, 0.5)
    positions = [tuple(int(v) * f for v in plan.position(i)) for i in range(len(plan))]
    windows = WindowConditions(pipe.condition_builder, layout.mask, layout.class_map, 2.0,
                               positions, side, 0, "window")  # fmt: skip
    conditions = [windows.build(i) for i in range(len(plan))]
    n, bs = len(plan), options.batch_size
    print(f"{args.size} x {args.size} px, {n} windows of {side} px, "
          f"{options.num_inference_steps} {options.scheduler} steps, guidance {options.guidance_scale}, "
          f"batch {bs}, {args.threads} thread(s)")  # fmt: skip

    def run_slide(k: int) -> tuple[float, float]:
        marks: list[float] = []
        start = time.perf_counter()
        generate_slide(pipe, layout, root / f"slide-{k}.tif", progress=False,
                       callback=lambda s, t: marks.append(time.perf_counter()))  # fmt: skip
        return marks[-1] - start, time.perf_counter() - start

    def run_independent() -> float:
        start = time.perf_counter()
        backbone.generate(conditions, options)
        total = time.perf_counter() - start
        z = torch.randn(n, backbone.autoencoder.latent_channels, side // f, side // f)
        start = time.perf_counter()
        for b in range(0, n, bs):  # as generate decodes each batch
            backbone.decode(z[b : b + bs])
        return total - (time.perf_counter() - start)

    loops, totals, indep = [], [], []
    for k in range(args.repeats):
        loop, total = run_slide(k)
        loops.append(loop)
        totals.append(total)
        indep.append(run_independent())
    ratios = [a / b for a, b in zip(loops, indep, strict=True)]
    ws = n * args.steps
    print(f"slide denoising loop: best {min(loops):.2f} s, median {statistics.median(loops):.2f} s "
          f"({ws / min(loops):.1f} window-steps/s = {n / min(loops):.2f} windows/s for {args.steps} steps); "
          f"whole generate_slide (decode + TIFF) best {min(totals):.2f} s")  # fmt: skip
    print(f"independent patches:  best {min(indep):.2f} s, median {statistics.median(indep):.2f} s "
          f"({ws / min(indep):.1f} window-steps/s)")  # fmt: skip
    print(f"ratio slide / independent (goal <= 1.3): best-of-each {min(loops) / min(indep):.3f}, "
          f"median of pairs {statistics.median(ratios):.3f}")  # fmt: skip
    print("load average (1, 5, 15 min):", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
