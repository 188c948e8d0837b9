"""``htd train-vae DATA --out OUTPUT``: train a small KL autoencoder on real patches.

No pretrained histology autoencoder can be downloaded offline, so the backbones' latent space
is learned from the patches themselves. DATA is a dataset folder (``htd sample``) or a folder
of images; OUTPUT is a diffusers ``AutoencoderKL`` folder (with the measured latent scaling
factor in its config) to pass as the backbone's ``autoencoder`` option. It is trained by the
one autoencoder training of htd, ``LatentBackbone.train_autoencoder`` (as ``fit`` and the
experiment do), with the preset's options unless given. Resumable: a checkpoint beside
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

#: The output kind (:mod:`htd_core.outputs`): OUTPUT is written only if it is new, empty or an
#: autoencoder htd wrote; anything else is refused before training.
KIND = "autoencoder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd train-vae`` (defaults: the backbone preset's autoencoder training)."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least, number_at_least

    p.add_argument("data", help="dataset folder (htd sample) or folder of images")
    co.add_output_argument(p, "autoencoder folder to write (diffusers format)", old_positional=True)
    p.add_argument(
        "--preset", default="small", help="architecture: tiny, small or paper (default small)"
    )
    p.add_argument(
        "--backbone", default="controlnet_ldm",
        help="the latent backbone whose autoencoder is trained (default controlnet_ldm; "
        "concat_ldm has the same one)",
    )  # fmt: skip
    p.add_argument("--steps", type=int_at_least(1), help="training steps (default: the preset's)")
    p.add_argument(
        "--image-size", type=int_at_least(1), help="patch side used (default: the preset's)"
    )
    p.add_argument(
        "--crop-size",
        type=int_at_least(1),
        help="random crop side per step (default: the preset's)",
    )
    p.add_argument(
        "--batch-size", type=int_at_least(1), help="crops per step (default: the preset's)"
    )
    p.add_argument(
        "--learning-rate", type=number_at_least(0, above=True),
        help="AdamW learning rate (default: the preset's)",
    )  # fmt: skip
    p.add_argument(
        "--adversarial-weight",
        type=number_at_least(0),
        help="weight of a PatchGAN adversarial term, times LDM's adaptive weight (default 0: "
        "off; LDM used 0.5)",
    )
    p.add_argument(
        "--adversarial-start",
        type=int_at_least(0),
        help="step from which the adversarial term and discriminator updates start (default 0)",
    )
    p.add_argument(
        "--finetune",
        metavar="FOLDER",
        help="fine-tune the decoder of this pretrained autoencoder (TAEF2's two weight files, "
        "or a TAEF2 folder htd saved) instead of training a KL one from scratch; its encoder "
        "stays frozen, so latents keep their meaning",
    )
    p.add_argument(
        "--perceptual-weight",
        type=number_at_least(0),
        help="weight of a perceptual term (LPIPS-style distance on the offline ImageNet "
        "EfficientNet-Lite0 features; default 0: off; LDM weighs its LPIPS term 1)",
    )
    p.add_argument(
        "--max-minutes", type=number_at_least(0, above=True),
        help="stop (and save) after this wall time",
    )  # fmt: skip
    p.add_argument("--limit", type=int_at_least(1), help="use at most this many images")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    co.add_compute_arguments(p)
    co.add_progress_argument(p)


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
    from htd_core.errors import ConfigError
    from htd_core.interfaces import LatentBackbone
    from htd_core.outputs import check_output, whole_output_lock
    from htd_core.plugins import create
    from htd_core.threads import check_device, configure_threads, report

    check_device(args.device)
    output = Path(args.out)
    check_output(output, KIND, what="--out")  # before any work: never replace a user's files
    device = {"device": args.device} if args.device else {}
    if args.finetune:
        check_finetune(args.finetune)
        device["autoencoder"] = args.finetune
    backbone = create(
        "backbones", args.backbone, preset=args.preset, image_size=args.image_size, **device
    )
    if not isinstance(backbone, LatentBackbone):
        raise ConfigError(f"--backbone {args.backbone}: not a latent backbone (no autoencoder)")
    options = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
               "learning_rate": args.learning_rate, "crop_size": args.crop_size,
               "adversarial_weight": args.adversarial_weight,
               "adversarial_start": args.adversarial_start,
               "perceptual_weight": args.perceptual_weight}  # fmt: skip
    options = {k: v for k, v in options.items() if v is not None}
    workload = "large" if args.preset == "paper" else "small"
    choice = configure_threads(args.threads, workload=workload, device=args.device)
    print(report("train-vae", choice), file=sys.stderr)
    images = read_images(Path(args.data), backbone.image_size, args.limit)
    with whole_output_lock(output, "--out"):  # one run per OUTPUT and its checkpoint
        checkpoint = output.with_name(f".{output.name}.checkpoint.pt")
        summary = backbone.train_autoencoder(
            images,
            checkpoint=checkpoint,
            max_minutes=args.max_minutes,
            progress=not args.no_progress,
            **options,
        )
        sample = images[:64]
        error = np.abs(backbone.reconstruct(sample).astype(np.float64) - sample).mean()
        summary["reconstruction_mae"] = round(float(error), 2)
        summary["images"] = len(images)
        backbone.autoencoder.save(output)
        if summary["steps"] >= summary["options"]["steps"]:
            checkpoint.unlink(missing_ok=True)
    print(json.dumps(summary, indent=2))
    print(f"autoencoder: {output} (use it as the backbone option autoencoder: {output})")
    return 0


def check_finetune(folder: str) -> None:
    """``--finetune`` must name a pretrained TAEF2 folder, checked before any image is read.

    Raises:
        InputError: not a folder, or one holding a KL autoencoder or nothing htd reads.
    """
    from htd_core.errors import InputError
    from htd_plugins.backbones import autoencoder_kind

    kind = autoencoder_kind(Path(folder).expanduser()) if Path(folder).is_dir() else None
    if kind is None or kind[0] == "kl":
        raise InputError(
            f"--finetune {folder}: give the folder of a pretrained TAEF2 autoencoder (its "
            "taef2_encoder.pth and taef2_decoder.pth, or a TAEF2 folder htd saved); a KL "
            "autoencoder is trained from scratch without --finetune"
        )


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="train a small KL autoencoder on patches (resumable)",
        description="Train the preset's AutoencoderKL on a dataset or image folder and save it in diffusers format, for the backbone option `autoencoder: OUTPUT`.",
        order=40,
    )
    registry.register("train-vae", command)
