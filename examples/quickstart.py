"""Quickstart: train a small dual-conditioned model on real GlaS patches and generate from
held-out masks with real crops, through the Python API.

    python examples/quickstart.py --minutes 12 --output runs/quickstart

Needs the GlaS tiles of the shared data folder (HTD_SHARED_DATA or ../shared/data). Rerun to
resume training where it stopped. Writes ``grid.png`` (map | crops | synthetic | real).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import htd_core
from htd_core.data import shared_data_dir
from htd_core.threads import configure_threads, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=12.0, help="training wall time, autoencoder included"
    )
    parser.add_argument(
        "--vae-minutes", type=float, default=2.0, help="the autoencoder's share of --minutes"
    )
    parser.add_argument("--output", default="runs/quickstart")
    args = parser.parse_args()
    out = Path(args.output)
    print(report("quickstart", configure_threads()))  # 1 thread or all cores: the faster here

    # 1. real heterogeneous 64 px patches (both classes 20-80 %): GlaS's official split by
    #    source image, training on train_* only (testA_/testB_ give the held-out layouts)
    glas = {"root": shared_data_dir(required=True) / "glas", "patch_size": 64, "stride": 64,
            "rule": "heterogeneous", "mpp": 0.9}  # fmt: skip
    sampler = htd_core.create("patch_samplers", "tiles", split="train", **glas)
    train = list(sampler)
    test = list(htd_core.create("patch_samplers", "tiles", split="test", limit=8, **glas))

    # 2. the dual condition (semantic map + one real crop per class, moved within its region)
    #    and the model, composed by registered name
    classes = list(sampler.class_map.names)
    pipe = htd_core.Pipeline(
        condition_builders=[
            {"name": "semantic_map", "classes": classes},
            {"name": "crop", "classes": classes, "d_base": 40, "placement": "elsewhere"},
        ],
        backbone={"name": "controlnet_ldm", "preset": "small"},
    )

    # 3. train (the autoencoder first, then the ControlNet LDM), resumable in out/; the saved
    #    pipeline folder is out/model (htd generate and Pipeline.from_pretrained read it)
    summary = pipe.fit(train, output_dir=str(out), steps=20_000, max_minutes=args.minutes,
                       vae_max_minutes=args.vae_minutes)  # fmt: skip
    print(
        f"{summary['steps']} steps, loss {summary['final_loss']:.4f}, model in {summary['model_dir']}"
    )

    # 4. generate from held-out real masks with crops cut from the held-out images
    synthetic = pipe.generate(test, seed=0, guidance_scale=2.0, scheduler="dpmsolver++")
    conditions = pipe.build_conditions(test, seed=0)  # the same crops, to show them
    print("figure:", save_grid(out / "grid.png", test, conditions, synthetic))


def save_grid(path: Path, real, conditions, synthetic) -> Path:
    """One row per layout: semantic map | crops (where valid) | synthetic | real."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(real), 4, figsize=(8, 2 * len(real)), squeeze=False)
    for row, (s, c, g) in enumerate(zip(real, conditions, synthetic, strict=True)):
        k = len(s.class_map)
        rgb = (c.select("crop:").numpy().reshape(k, 3, *s.size) + 1) * 127.5
        valid = c.select("valid:").numpy() > 0
        crops = np.full((*s.size, 3), 40.0)
        for i in range(k):
            crops[valid[i]] = rgb[i].transpose(1, 2, 0)[valid[i]]
        panels = (s.class_map.colorize(s.mask), crops.astype(np.uint8), g.image, s.image)
        for ax, image, title in zip(
            axes[row], panels, ("map", "crops", "synthetic", "real"), strict=True
        ):
            ax.imshow(image)
            ax.set_axis_off()
            ax.set_title(title if row == 0 else "", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
