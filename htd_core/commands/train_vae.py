"""``htd train-vae DATA OUTPUT``: train a small KL autoencoder on real patches.

No pretrained histology autoencoder can be downloaded offline, so the backbones' latent space
is learned from the patches themselves. DATA is a dataset folder (``htd sample``) or a folder
of images; OUTPUT is a diffusers ``AutoencoderKL`` folder (with the measured latent scaling
factor in its config) to pass as the backbone's ``vae`` option. Resumable: a checkpoint beside
OUTPUT lets a rerun continue.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-vae",
        help="train a small KL autoencoder on patches (resumable)",
        description="Train the preset's AutoencoderKL on a dataset or image folder and save it in "
        "diffusers format, for the backbone option `vae: OUTPUT`.",
    )
    p.add_argument("data", help="dataset folder (htd sample) or folder of images")
    p.add_argument("output", help="autoencoder folder to write (diffusers format)")
    p.add_argument(
        "--preset", default="small", help="architecture: tiny, small or paper (default small)"
    )
    p.add_argument("--steps", type=int, help="training steps (default: the preset's vae_steps)")
    p.add_argument("--image-size", type=int, help="patch side used (default: the preset's)")
    p.add_argument(
        "--crop-size", type=int, help="random crop side per step (default: the preset's)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--learning-rate", type=float, help="AdamW learning rate (default: the preset's)"
    )
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this wall time")
    p.add_argument("--limit", type=int, help="use at most this many images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def read_images(folder: Path, size: int, limit: int | None) -> "np.ndarray":  # noqa: F821, UP037
    """Centre crops ``size`` x ``size`` of the dataset's (or folder's) images, uint8 N x S x S x 3."""
    import numpy as np
    from PIL import Image

    from htd_core.dataset import Dataset
    from htd_core.errors import InputError

    if (folder / "manifest.csv").is_file():
        paths = [folder / row["image"] for row in Dataset(folder).rows]
    else:
        base = folder / "images" if (folder / "images").is_dir() else folder
        paths = (
            sorted(p for p in base.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if base.is_dir()
            else []
        )
    if not paths:
        raise InputError(
            f"{folder}: no images found (give an `htd sample` dataset or a folder of images)"
        )
    out = []
    for p in paths[:limit]:
        im = np.asarray(Image.open(p).convert("RGB"))
        h, w = im.shape[:2]
        if min(h, w) < size:
            raise InputError(f"image {p} is {w}x{h}, smaller than --image-size {size}")
        y, x = (h - size) // 2, (w - size) // 2
        out.append(im[y : y + size, x : x + size])
    return np.stack(out)


def run(args: argparse.Namespace) -> int:
    from htd_plugins.backbones.autoencoder import build_vae, reconstruction_error, train_vae
    from htd_plugins.backbones.checkpoint import write_model_folder
    from htd_plugins.backbones.presets import get_preset

    preset = get_preset(args.preset)
    size = args.image_size or preset.image_size
    images = read_images(Path(args.data), size, args.limit)
    output = Path(args.output)
    checkpoint = output.with_name(f".{output.name}.checkpoint.pt")
    vae = build_vae(preset.vae, size, seed=args.seed)
    summary = train_vae(
        vae, images, steps=args.steps or preset.train.get("vae_steps", 1000),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate or preset.train.get("vae_learning_rate", 1e-3),
        crop_size=args.crop_size or preset.train.get("vae_crop_size"), seed=args.seed,
        max_seconds=args.max_minutes and args.max_minutes * 60, checkpoint=checkpoint,
    )  # fmt: skip
    summary["reconstruction_mae"] = round(reconstruction_error(vae, images[:64]), 2)
    summary["images"] = len(images)
    write_model_folder(output, vae.save_pretrained)
    if summary["steps"] >= (args.steps or preset.train.get("vae_steps", 1000)):
        checkpoint.unlink(missing_ok=True)
    print(json.dumps(summary, indent=2))
    print(f"autoencoder: {output} (use it as the backbone option vae: {output})")
    return 0
