"""What an autoencoder choice costs: seconds per denoiser training step and per generated
image, side by side in one process (issue "Synthetic tissue good enough to train on", item 1).

Rows: the ``small`` preset's KL autoencoder (4x) at 64 px (today's default: a 16 x 16 latent),
TAEF2 (8x) at 64 px (8 x 8) and at 128 px (16 x 16: four times the pixels for the latent grid
of today's 64 px) and pixel space at 64 px (no autoencoder: a 64 x 64 x 3 grid), each with
latents encoded every step and cached once
(``cache_latents``). Real GlaS training tiles, the crop arm's condition (map + crops), batch 16,
1 thread; rounds interleave the rows and the median of ``--rounds`` is printed with the load.

    python benchmarks/bench_autoencoder_cost.py [--steps 10] [--rounds 3] [--images 8] \
        [--rows "kl 64 px,pixels 64 px"]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=8, help="generated per round")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    args = parser.parse_args()

    import torch

    from htd_core import GenerationOptions
    from htd_core.data import shared_data_dir, taef2_dir
    from htd_core.testing import real_tiles
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.condition_builders.crop import CropBuilder
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    torch.set_num_threads(1)
    root, taef2 = shared_data_dir(required=True), taef2_dir()
    if taef2 is None:
        raise SystemExit("TAEF2 weights not found: set HTD_TAEF2")
    builder = SemanticMapBuilder() + CropBuilder(fixed_size=24, min_size=8)
    common = {"progress": False, "tensorboard": False, "batch_size": 16}
    rows = {"kl 64 px": (64, None), "taef2 64 px": (64, str(taef2)),
            "taef2 128 px": (128, str(taef2)), "pixels 64 px": (64, "pixels")}  # fmt: skip
    if args.rows:
        rows = {k: v for k, v in rows.items() if k in args.rows.split(",") or k == "kl 64 px"}
    models, data = {}, {}
    for name, (size, ae) in rows.items():
        data[name] = real_tiles(root, "glas", n=32, size=size)
        models[name] = ControlNetLDM(preset="small", image_size=size, autoencoder=ae, device="cpu")
        models[name].fit(data[name], builder, steps=1, vae_steps=50, **common)
    gen = GenerationOptions(num_inference_steps=25, guidance_scale=2.0, batch_size=args.images)
    times: dict[str, dict[str, list[float]]] = {n: {} for n in rows}
    for _ in range(args.rounds):
        for name in rows:
            for cache in (False, True):
                s = models[name].fit(data[name], builder, steps=args.steps, cache_latents=cache,
                                     **common)  # fmt: skip
                key = "s/step cached" if cache else "s/step"
                times[name].setdefault(key, []).append(1 / s["steps_per_second"])
            conditions = [builder.build(t) for t in data[name][: args.images]]
            start = time.perf_counter()
            models[name].generate(conditions, gen)
            times[name].setdefault("s/image", []).append(
                (time.perf_counter() - start) / args.images
            )
    base = statistics.median(times["kl 64 px"]["s/step"])
    for name, t in times.items():
        med = {k: round(statistics.median(v), 3) for k, v in t.items()}
        print(json.dumps({"row": name, **med, "step ratio vs kl 64 px": round(med["s/step"] / base, 2),
                          "load": [round(x, 2) for x in os.getloadavg()]}))  # fmt: skip


if __name__ == "__main__":
    main()
