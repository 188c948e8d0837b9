"""Train the ``paper`` preset for a few hundred steps on real GlaS patches; report speed and memory.

For a GPU machine (``python benchmarks/gpu_paper_preset.py``); also runs on a CPU with tiny
numbers (``--steps 2 --vae-steps 1 --batch-size 2 --limit 8``) to check the script itself.
GlaS tiles are 224 px, so the paper preset runs at 224 px (a multiple of its 32 px grid).
Prints the autoencoder's and the diffusion model's steps/s, the peak GPU memory (or the peak
resident memory on CPU) and the parameter counts.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="diffusion training steps")
    parser.add_argument("--vae-steps", type=int, default=200, help="autoencoder training steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many GlaS tiles")
    parser.add_argument(
        "--backbone", default="controlnet_ldm", choices=("controlnet_ldm", "concat_ldm")
    )
    parser.add_argument(
        "--data-dir", help="shared data folder (default: HTD_SHARED_DATA or ../shared/data)"
    )
    args = parser.parse_args()

    import numpy as np
    import torch

    from htd_core import create
    from htd_core.data import shared_data_dir

    root = args.data_dir or shared_data_dir(required=True)
    sampler = create(
        "patch_samplers", "tiles", root=f"{root}/glas", rule="heterogeneous", limit=args.limit
    )
    samples = list(sampler)
    classes = list(sampler.class_map.names)
    builder = create("condition_builders", "semantic_map", classes=classes) + create(
        "condition_builders", "crop", classes=classes, placement="elsewhere"
    )
    backbone = create("backbones", args.backbone, preset="paper", image_size=224, device="auto")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    # the autoencoder first, at the same batch size as the denoiser (fit would use the
    # preset's autoencoder batch); fit then keeps it
    size = backbone.image_size
    images = np.stack([s.image[:size, :size] for s in samples])
    vae = backbone.train_autoencoder(
        images, steps=args.vae_steps, batch_size=args.batch_size, progress=True
    )
    summary = backbone.fit(
        samples, builder, output_dir=tempfile.mkdtemp(prefix="htd-paper-"), steps=args.steps,
        batch_size=args.batch_size, checkpoint_every=max(args.steps, 1), progress=True,
        tensorboard=False,
    )  # fmt: skip
    total = time.perf_counter() - start
    parts = backbone.denoiser.parts
    report = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "backbone": args.backbone,
        "patches": len(samples),
        "image_size": 224,
        "batch_size": args.batch_size,
        "mixed_precision": "auto",
        "vae_steps_per_second": round(vae["steps"] / max(vae["seconds"], 1e-9), 3),
        "diffusion_steps": summary["steps"],
        "diffusion_steps_per_second": summary["steps_per_second"],
        "final_loss": summary["final_loss"],
        "parameters_millions": {
            k: round(sum(p.numel() for p in m.parameters()) / 1e6, 1) for k, m in parts.items()
        },
        "peak_memory_gib": round(
            (
                torch.cuda.max_memory_allocated()
                if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            )
            / 2**30,
            2,
        ),  # fmt: skip
        "peak_memory_kind": "GPU allocated" if cuda else "process RSS",
        "total_seconds": round(total, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
