"""htd's ``generate`` vs diffusers' ``StableDiffusionControlNetPipeline`` on the same weights.

Both sample the same conditions with the same ``small`` controlnet_ldm components (random
weights after one training step; speed does not depend on training), the same DDIM scheduler,
steps and per-sample generators, in one process. Prints seconds per batch and the ratio
htd / diffusers (goal: <= 1.05), and checks both give the same images.

    python benchmarks/bench_sampling_overhead.py [--steps 20] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffusers import StableDiffusionControlNetPipeline

    from htd_core import GenerationOptions
    from htd_core.testing import synthetic_sample
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.backbones.ldm.modules import TokenEncoder
    from htd_plugins.condition_builders.crop import CropBuilder
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    samples = [synthetic_sample(64, seed=s) for s in range(args.batch)]
    builder = SemanticMapBuilder() + CropBuilder(fixed_size=20, min_size=4)
    backbone = ControlNetLDM(preset="small")
    options = GenerationOptions(
        guidance_scale=1.0, scheduler="ddim", num_inference_steps=args.steps,
        batch_size=args.batch, seed=0,
    )  # fmt: skip
    backbone.fit(
        samples, builder, steps=1, vae_steps=1, progress=False, tensorboard=False, batch_size=2
    )
    conds = [builder.build(s, seed=0) for s in samples]
    folder = Path(tempfile.mkdtemp()) / "model"
    backbone.save(folder)
    none = dict.fromkeys(
        ("text_encoder", "tokenizer", "safety_checker", "feature_extractor", "image_encoder")
    )
    pipe = StableDiffusionControlNetPipeline.from_pretrained(folder, **none)
    pipe.set_progress_bar_config(disable=True)
    null = (
        TokenEncoder.from_pretrained(folder / "token_encoder").null_states(args.batch, 0).detach()
    )
    image = torch.stack([c.spatial for c in conds])

    def run_htd() -> np.ndarray:
        return backbone.generate(conds, options)

    def run_diffusers() -> np.ndarray:
        gens = [torch.Generator().manual_seed(i) for i in range(args.batch)]
        out = pipe(prompt_embeds=null, image=image, height=64, width=64, num_inference_steps=args.steps,
                   guidance_scale=1.0, generator=gens, output_type="np").images  # fmt: skip
        return (out * 255).round().astype(np.uint8)

    a, b = run_htd(), run_diffusers()  # warm-up, and the equivalence check
    max_diff = int(np.abs(a.astype(int) - b.astype(int)).max())
    times: dict[str, list[float]] = {"htd": [], "diffusers": []}
    order = [("htd", run_htd), ("diffusers", run_diffusers)]
    for i in range(args.repeats):  # interleaved, alternating who goes first: load hits both alike
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    median = {k: float(np.median(v)) for k, v in times.items()}
    ratio = best["htd"] / best["diffusers"]
    print(
        f"small controlnet_ldm, {args.batch} x 64 px, {args.steps} DDIM steps, {torch.get_num_threads()} threads"
    )
    for name in ("htd", "diffusers"):
        print(
            f"  {name:10s} best {best[name]:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times[name])})"
        )
    print(f"  ratio htd / diffusers = {ratio:.3f} best, {median['htd'] / median['diffusers']:.3f} median "
          f"(goal <= 1.05); max pixel difference {max_diff}")  # fmt: skip


if __name__ == "__main__":
    main()
