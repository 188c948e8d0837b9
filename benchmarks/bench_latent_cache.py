"""Training speed of the ``small`` preset with and without latent caching, in one run.

Without caching every step encodes its augmented batch with the autoencoder; with caching the
posterior of every patch and of its 8 rotations/flips is computed once (colour augmentation
is then off). Prints steps/s of both, the one-off cache time and the break-even step count.

    python benchmarks/bench_latent_cache.py [--steps 30] [--samples 64] [--threads N]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from htd_core.testing import synthetic_sample
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.backbones.ldm.augment import Augmentation
    from htd_plugins.backbones.ldm.trainer import BatchSource
    from htd_plugins.condition_builders.crop import CropBuilder
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    samples = [synthetic_sample(64, seed=s) for s in range(args.samples)]
    builder = SemanticMapBuilder() + CropBuilder(fixed_size=20, min_size=4)
    common = {"vae_steps": 1, "progress": False, "tensorboard": False, "batch_size": 16}
    backbone = ControlNetLDM(preset="small")
    backbone.fit(samples, builder, steps=1, **common)  # builds the autoencoder and the model

    start = time.perf_counter()
    BatchSource(samples, builder, backbone.autoencoder, Augmentation(), batch_size=16, image_size=64,
                seed=0, cache=True, device=torch.device("cpu"))  # fmt: skip
    cache_seconds = time.perf_counter() - start
    rates = {}
    for cache in (False, True):  # fit continues training the same model; only speed matters
        summary = backbone.fit(samples, builder, steps=args.steps, cache_latents=cache, **common)
        rates[cache] = summary["steps_per_second"]
    gain = 1 / rates[False] - 1 / rates[True]
    print(
        f"small preset, batch 16 x 64 px, {args.samples} samples, {torch.get_num_threads()} threads"
    )
    print(f"  encode every step : {rates[False]:.3f} steps/s")
    print(
        f"  cached latents    : {rates[True]:.3f} steps/s  (cache built once in {cache_seconds:.1f} s)"
    )
    print(f"  speed-up {rates[True] / rates[False]:.2f}x; break-even after "
          f"{cache_seconds / gain:.0f} steps" if gain > 0 else "  no speed-up")  # fmt: skip


if __name__ == "__main__":
    main()
