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

import numpy as np

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd train-vae``."""
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


def read_images(folder: Path, size: int, limit: int | None) -> np.ndarray:
    """Centre crops of the dataset's (or folder's) images: uint8 N x size x size x 3.

    Args:
        folder: an ``htd sample`` dataset (its manifest's images), a folder with ``images/``,
            or a folder of images (read through :mod:`htd_core.images`).
        size: crop side in pixels.
        limit: read at most this many images (None: all).

    Raises:
        InputError: no images, an unreadable image, or one smaller than ``size``.
    """
    from htd_core.dataset import Dataset
    from htd_core.errors import InputError
    from htd_core.images import image_files, read_rgb

    if (folder / "manifest.csv").is_file():
        paths = [folder / row["image"] for row in Dataset(folder).rows]
    else:
        base = folder / "images" if (folder / "images").is_dir() else folder
        paths = image_files(base) if base.is_dir() else []
    if not paths:
        raise InputError(
            f"{folder}: no images found (give an `htd sample` dataset or a folder of images)"
        )
    out = []
    for p in paths[:limit]:
        im = read_rgb(p)
        h, w = im.shape[:2]
        if min(h, w) < size:
            raise InputError(f"image {p} is {w}x{h}, smaller than --image-size {size}")
        y, x = (h - size) // 2, (w - size) // 2
        out.append(im[y : y + size, x : x + size])
    return np.stack(out)


def run(args: argparse.Namespace) -> int:
    from htd_core.io import atomic_write_folder
    from htd_plugins.backbones.ldm.autoencoder import build_vae, reconstruction_error, train_vae
    from htd_plugins.backbones.ldm.presets import get_preset

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
    atomic_write_folder(output, vae.save_pretrained)
    if summary["steps"] >= (args.steps or preset.train.get("vae_steps", 1000)):
        checkpoint.unlink(missing_ok=True)
    print(json.dumps(summary, indent=2))
    print(f"autoencoder: {output} (use it as the backbone option vae: {output})")
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="train a small KL autoencoder on patches (resumable)",
        description="Train the preset's AutoencoderKL on a dataset or image folder and save it in diffusers format, for the backbone option `vae: OUTPUT`.",
        order=40,
    )
    registry.register("train-vae", command)
