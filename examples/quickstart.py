"""Quickstart: train a small dual-conditioned model on real GlaS patches and generate from
held-out masks with real crops, through the Python API.

    python examples/quickstart.py --minutes 10 --output runs/quickstart

Needs the GlaS tiles of the shared data folder (HTD_SHARED_DATA or ../shared/data). Rerun to
resume training where it stopped. Writes ``grid.png`` (map | crops | synthetic | real).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import htd_core
from htd_core.data import shared_data_dir
from htd_core.splits import partition, sources_of, split_by_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="diffusion training wall time")
    parser.add_argument(
        "--vae-minutes", type=float, default=2.0, help="autoencoder training wall time"
    )
    parser.add_argument("--output", default="runs/quickstart")
    args = parser.parse_args()
    out = Path(args.output)

    # 1. real heterogeneous 64 px patches (both classes 20-80 %), split by source image
    sampler = htd_core.create(
        "patch_samplers", "tiles", root=shared_data_dir(required=True) / "glas",
        patch_size=64, stride=64, rule="heterogeneous", mpp=0.9,
    )  # fmt: skip
    samples = list(sampler)
    train_idx, test_idx = split_by_source(sources_of(samples), test_fraction=0.2, seed=0)
    train, test = partition(samples, train_idx), partition(samples, test_idx)[:8]

    # 2. the dual condition: semantic map + one real crop per class (moved within its region)
    classes = list(sampler.class_map.names)
    builder = htd_core.create(
        "condition_builders", "semantic_map", classes=classes
    ) + htd_core.create(
        "condition_builders", "crop", classes=classes, d_base=40, placement="elsewhere"
    )

    # 3. train (the autoencoder first, then the ControlNet LDM), resumable in out/
    backbone = htd_core.create("backbones", "controlnet_ldm", preset="small")
    summary = backbone.fit(train, builder, output_dir=str(out), steps=20_000, max_minutes=args.minutes,
                           vae_max_minutes=args.vae_minutes)  # fmt: skip
    print(
        f"{summary['steps']} steps, loss {summary['final_loss']:.4f}, model in {summary['model_dir']}"
    )

    # 4. generate from held-out real masks with crops cut from the held-out images
    conditions = [builder.build(s, seed=i) for i, s in enumerate(test)]
    images = backbone.generate(conditions, seed=0, guidance_scale=2.0, scheduler="dpmsolver++")

    from htd_plugins.demo.report import crop_view
    from htd_plugins.evaluators.figures import save_grid

    rows = [
        {
            "map": s.class_map.colorize(s.mask),
            "crops": crop_view(c, len(classes)),
            "synthetic": im,
            "real": s.image,
        }
        for s, c, im in zip(test, conditions, images, strict=True)
    ]
    print(
        "figure:",
        save_grid(out / "grid.png", rows, title="quickstart: map | crops | synthetic | real"),
    )


if __name__ == "__main__":
    main()
