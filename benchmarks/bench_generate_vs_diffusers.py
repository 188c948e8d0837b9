"""htd's generation against diffusers' ``StableDiffusionControlNetPipeline`` at the batch sizes
users pick (issue 26, item 4; target: htd / diffusers >= 1.0 in images/s at every batch size).

Both sides run one saved ``controlnet_ldm`` model folder (random weights after one training
step; speed does not depend on training), in one process:

- **htd**: ``ControlNetLDM.load(folder).generate(conditions, GenerationOptions(...))``;
- **diffusers**: ``StableDiffusionControlNetPipeline.from_pretrained(folder, text_encoder=None,
  tokenizer=None, safety_checker=None, feature_extractor=None, image_encoder=None)``: the
  folder's ``model_index.json`` names its AutoencoderKL, UNet2DConditionModel, ControlNetModel
  and DDIM scheduler. htd's model has no text encoder: its UNet cross-attends to the learned
  null token (``cross_attention_dim`` wide, one token), which is given as ``prompt_embeds``
  (and as ``negative_prompt_embeds`` when guided); the control image is the stacked spatial
  conditions; output ``np`` turned to uint8 as htd returns.

Same conditions (semantic map + crops of synthetic layouts), scheduler (DDIM), steps, guidance,
per-image generators, CPU, float32. With guidance > 1 both evaluate UNet + ControlNet on twice
the batch per step, but the null branches differ by design: diffusers keeps the control image
there and guides the prompt only, htd's null branch drops the whole condition as trained. So
the images are compared at guidance 1, where both must give the same image for the same noise
and condition (the maximum pixel difference is printed). Each batch shape is warmed up first
(one step). Per round and batch size, each side generates at least ``--images`` images in
calls of that size, the two sides alternating call by call (who goes first alternates too);
images/s is the median over rounds.

    python benchmarks/bench_generate_vs_diffusers.py [--batches 1 8 32] [--steps 25]
        [--guidance 2] [--images 16] [--rounds 3] [--preset small] [--threads N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

NO_TEXT = ("text_encoder", "tokenizer", "safety_checker", "feature_extractor", "image_encoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--images", type=int, default=16, help="images per measurement (>= 1 call)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="small", choices=("tiny", "small", "paper"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile one call of each side")
    args = parser.parse_args()
    if min(args.batches) < 1 or args.steps < 1 or args.rounds < 1 or args.guidance < 1:
        parser.error("need batch sizes >= 1, --steps >= 1, --rounds >= 1, --guidance >= 1")
    print(f"load average before (1/5/15 min): {os.getloadavg()}", flush=True)

    import numpy as np
    import torch

    if args.threads:
        os.environ["HTD_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    from diffusers import StableDiffusionControlNetPipeline

    from htd_core import GenerationOptions
    from htd_core.testing import synthetic_sample
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.condition_builders.crop import CropBuilder
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    trained = ControlNetLDM(preset=args.preset, device="cpu")
    size = trained.image_size
    side = size * 5 // 16  # 20 px crops at 64 px
    builder = SemanticMapBuilder() + CropBuilder(fixed_size=side, min_size=min(4, side))
    layouts = [synthetic_sample(size, seed=s) for s in range(max(args.batches))]
    trained.fit(layouts[:4], builder, steps=1, vae_steps=1, batch_size=2, progress=False,
                tensorboard=False)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="htd-bench-") as tmp:  # the saved model folder
        folder = Path(tmp) / "model"
        trained.save(folder)
        backbone = ControlNetLDM.load(folder, device="cpu")
        pipe = StableDiffusionControlNetPipeline.from_pretrained(folder, **dict.fromkeys(NO_TEXT))
    pipe.set_progress_bar_config(disable=True)
    null = backbone.denoiser.parts["token_encoder"].null_states(1, 0).detach()
    conds = [builder.build(s, seed=i) for i, s in enumerate(layouts)]
    control = torch.stack([c.spatial for c in conds])

    def run_htd(n: int, guidance: float, steps: int) -> np.ndarray:
        options = GenerationOptions(guidance_scale=guidance, scheduler="ddim",
                                    num_inference_steps=steps, batch_size=n, seed=0)  # fmt: skip
        return backbone.generate(conds[:n], options)

    def run_diffusers(n: int, guidance: float, steps: int) -> np.ndarray:
        embeds = null.expand(n, -1, -1)
        out = pipe(prompt_embeds=embeds, negative_prompt_embeds=embeds, image=control[:n],
                   height=size, width=size, num_inference_steps=steps, guidance_scale=guidance,
                   generator=[torch.Generator().manual_seed(i) for i in range(n)],
                   output_type="np").images  # fmt: skip
        return (out * 255).round().astype(np.uint8)

    n = min(2, max(args.batches))  # the check, and a warm-up of both
    a, b = run_htd(n, 1.0, min(args.steps, 5)), run_diffusers(n, 1.0, min(args.steps, 5))
    diff = int(np.abs(a.astype(int) - b.astype(int)).max())
    print(f"same images at guidance 1 ({n} images, {min(args.steps, 5)} steps): "
          f"max pixel difference {diff} (of 255)")  # fmt: skip
    print(f"{args.preset} controlnet_ldm, {size} px, {args.steps} DDIM steps, guidance "
          f"{args.guidance:g}, {torch.get_num_threads()} threads, float32, CPU")  # fmt: skip
    sides = {"htd": run_htd, "diffusers": run_diffusers}
    for bs in args.batches:  # warm-up of each batch shape (one step)
        for fn in sides.values():
            fn(bs, args.guidance, 1)
    rates = {(name, bs): [] for name in sides for bs in args.batches}
    for r in range(args.rounds):
        for bs in args.batches:
            calls = -(-args.images // bs)
            seconds = dict.fromkeys(sides, 0.0)
            for c in range(calls):  # call by call, alternating who goes first
                for name in list(sides) if (r + c) % 2 == 0 else list(sides)[::-1]:
                    start = time.perf_counter()
                    sides[name](bs, args.guidance, args.steps)
                    seconds[name] += time.perf_counter() - start
            for name in sides:
                rates[name, bs].append(calls * bs / seconds[name])
        print(f"round {r + 1}: " + ", ".join(
            f"batch {bs} htd {rates['htd', bs][-1]:.2f} / diffusers {rates['diffusers', bs][-1]:.2f}"
            for bs in args.batches) + " images/s", flush=True)  # fmt: skip
    worst = float("inf")
    for bs in args.batches:
        med = {name: statistics.median(rates[name, bs]) for name in sides}
        ratio = med["htd"] / med["diffusers"]
        worst = min(worst, ratio)
        print(f"batch {bs:3d}: htd {med['htd']:.3f} images/s, diffusers {med['diffusers']:.3f} "
              f"images/s, ratio htd / diffusers = {ratio:.3f} (median of {args.rounds})")  # fmt: skip
    print(f"worst ratio htd / diffusers = {worst:.3f} (target >= 1.0)")
    print(f"load average after (1/5/15 min): {os.getloadavg()}", flush=True)
    if args.profile:
        bs = max(args.batches)
        for name, fn in sides.items():
            prof = cProfile.Profile()
            prof.runcall(fn, bs, args.guidance, args.steps)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
            print(f"--- cProfile of one {name} call, batch {bs} ---\n{out.getvalue()}")


if __name__ == "__main__":
    main()
