"""``htd train-vae DATA OUTPUT``: train a small KL autoencoder on real patches.

No pretrained histology autoencoder can be downloaded offline, so the backbones' latent space
is learned from the patches themselves. DATA is a dataset folder (``htd sample``) or a folder
of images; OUTPUT is a diffusers ``AutoencoderKL`` folder (with the measured latent scaling
factor in its config) to pass as the backbone's ``vae`` option. Resumable: a checkpoint beside
OUTPUT lets a rerun continue. OUTPUT must be new, empty, or an autoencoder htd wrote (replaced):
an existing file, or a folder holding anything else, is refused before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from htd_core import hookimpl
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument

#: The output kind (:mod:`htd_core.outputs`): OUTPUT is written only if it is new, empty or an
#: autoencoder htd wrote; anything else is refused before training.
KIND = "autoencoder"


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
    p.add_argument(
        "--adversarial-weight",
        type=float,
        default=0.0,
        help="weight of a PatchGAN adversarial term, times LDM's adaptive weight (default 0: "
        "off; LDM used 0.5)",
    )
    p.add_argument(
        "--adversarial-start",
        type=int,
        default=0,
        help="step from which the adversarial term and discriminator updates start (default 0)",
    )
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this wall time")
    p.add_argument("--limit", type=int, help="use at most this many images")
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)


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
    from htd_core.outputs import check_output
    from htd_core.threads import configure_threads, report
    from htd_plugins.backbones.ldm.autoencoder import build_vae, reconstruction_error, train_vae
    from htd_plugins.backbones.ldm.discriminator import check_options
    from htd_plugins.backbones.ldm.presets import get_preset
    from htd_plugins.backbones.ldm.progress import BoundedProgress
    from htd_plugins.backbones.ldm.training import Clock

    output = Path(args.output)
    check_output(output, KIND, what="OUTPUT")  # before any work: never replace a user's files
    check_options(args.adversarial_weight, args.adversarial_start)
    preset = get_preset(args.preset)
    workload = "large" if preset.name == "paper" else "small"
    print(report("train-vae", configure_threads(args.threads, workload=workload)), file=sys.stderr)
    size = args.image_size or preset.image_size
    images = read_images(Path(args.data), size, args.limit)
    checkpoint = output.with_name(f".{output.name}.checkpoint.pt")
    vae = build_vae(preset.vae, size, seed=args.seed)
    steps = args.steps or preset.train.get("vae_steps", 1000)
    clock = Clock(args.max_minutes and args.max_minutes * 60)
    bar = BoundedProgress("autoencoder", steps, clock)  # counts down to the bound that stops it
    summary = train_vae(
        vae, images, steps=steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate or preset.train.get("vae_learning_rate", 1e-3),
        crop_size=args.crop_size or preset.train.get("vae_crop_size"), seed=args.seed,
        checkpoint=checkpoint, clock=clock, adversarial_weight=args.adversarial_weight,
        adversarial_start=args.adversarial_start,
        progress=lambda step, loss: bar.update(step + 1, loss=f"{loss:.4f}"),
    )  # fmt: skip
    bar.close()
    summary["reconstruction_mae"] = round(reconstruction_error(vae, images[:64]), 2)
    summary["images"] = len(images)
    atomic_write_folder(output, vae.save_pretrained, kind=KIND)
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
