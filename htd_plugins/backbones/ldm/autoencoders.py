"""The autoencoders a latent diffusion backbone can declare, read from a local folder.

- a KL autoencoder (:mod:`.kl`): a diffusers ``AutoencoderKL`` folder (``htd train-vae``'s
  output, or a pipeline folder with ``vae/``), factor 4 at the ``small`` preset;
- TAEF2 (:mod:`.taef2`): the folder of its two published weight files, or a folder htd saved
  (with the latent statistics of its training patches); factor 8, 32 channels, frozen;
- pixel space (:mod:`.pixels`): the word ``pixels`` (or a folder it saved): no autoencoder.

The ``autoencoder`` option of ``controlnet_ldm`` / ``concat_ldm`` takes either folder; the kind
is read from the folder's files. A loaded autoencoder is calibrated on the training patches
(:func:`calibrate`) as the KL autoencoder always was: latents of unit variance for the denoiser.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from htd_core.errors import InputError
from htd_core.interfaces.latent import Autoencoder


def autoencoder_kind(path: str | Path) -> tuple[str, Path] | None:
    """(``"kl"``, ``"taef2"`` (published weights), ``"taef2-saved"`` or ``"pixels"``, the
    folder holding it: ``path`` or its ``vae/``), or None when neither holds one; the word
    ``pixels`` itself gives (``"pixels"``, ``Path("pixels")``)."""
    from htd_plugins.backbones.ldm import pixels
    from htd_plugins.backbones.ldm.taef2 import KIND, WEIGHT_FILES

    if str(path) == pixels.KIND:
        return pixels.KIND, Path(pixels.KIND)

    for folder in (Path(path), Path(path) / "vae"):
        config = folder / "config.json"
        if config.is_file():
            try:
                saved = json.loads(config.read_text()).get("htd_autoencoder")
            except (OSError, ValueError, AttributeError):
                saved = None
            if saved == pixels.KIND:
                return pixels.KIND, folder
            return ("taef2-saved" if saved == KIND else "kl"), folder
        if all((folder / f).is_file() for f in WEIGHT_FILES):
            return "taef2", folder
    return None


def load_autoencoder(source: str | Path) -> Autoencoder:
    """The autoencoder in local folder ``source`` (see the module docstring).

    Raises:
        InputError: ``source`` is not a local folder, or holds no autoencoder htd reads.
    """
    from htd_plugins.backbones.ldm.kl import KLAutoencoder
    from htd_plugins.backbones.ldm.pixels import KIND, PixelSpace
    from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder

    path = Path(source).expanduser()
    kind, folder = autoencoder_kind(path) or (None, path)  # the word 'pixels' included
    if kind == KIND:
        return PixelSpace()
    if not path.is_dir():
        raise InputError(
            f"autoencoder {str(source)!r} is not a local folder (htd downloads nothing): train "
            "one with `htd train-vae`, give the folder of TAEF2's two weight files, or "
            "'pixels' for pixel-space diffusion"
        )
    if kind == "kl":
        return KLAutoencoder.load(path)
    if kind == "taef2-saved":
        return TinyAutoencoder.load(folder)
    if kind == "taef2":
        return TinyAutoencoder.from_weights(folder)
    raise InputError(
        f"autoencoder folder {path} holds no autoencoder htd reads: give a folder written by "
        "`htd train-vae` (config.json), a diffusers AutoencoderKL folder, or TAEF2's "
        "taef2_encoder.pth and taef2_decoder.pth"
    )


def calibrate(
    ae: Autoencoder, images: np.ndarray, scaling_factor: float | None = None, seed: int = 0
) -> None:
    """Measure ``ae``'s latent statistics on ``images`` (uint8 N x H x W x 3, the training
    patches): the KL autoencoder's scaling factor (1 / std of posterior samples), TAEF2's
    per-channel mean and scaling factor. A given ``scaling_factor`` replaces the measured one;
    ``seed``: of the KL posterior samples."""
    from htd_plugins.backbones.ldm.kl import KLAutoencoder
    from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder

    if isinstance(ae, KLAutoencoder):
        ae.scaling_factor = scaling_factor or ae.measure_scaling_factor(images, seed=seed)
    elif isinstance(ae, TinyAutoencoder):
        ae.measure_statistics(images)
        if scaling_factor:
            ae.scaling_factor = float(scaling_factor)
    elif scaling_factor:
        ae.scaling_factor = float(scaling_factor)


def pretrained_to_finetune(source: str | None, images: np.ndarray) -> Autoencoder | None:
    """The TAEF2 autoencoder named by ``source`` (a backbone's ``autoencoder`` option),
    calibrated on ``images``, for ``train_autoencoder`` to fine-tune its decoder; None when
    ``source`` names none (a KL autoencoder is trained from scratch instead).

    Raises:
        InputError: ``source`` names a folder that holds no autoencoder.
    """
    if not source:
        return None
    kind = autoencoder_kind(Path(source).expanduser())
    if kind is not None and kind[0] == "kl":  # not loaded: a new one is trained instead
        return None
    if kind is not None and kind[0] == "pixels":
        raise InputError(
            "autoencoder 'pixels' (pixel-space diffusion) has no weights to train: leave "
            "autoencoder training out (vae_finetune_steps 0), or name a TAEF2 folder"
        )
    ae = load_autoencoder(source)  # TAEF2, or an error naming what the folder lacks
    calibrate(ae, images)
    return ae


def condition_widths(widths: tuple[int, ...], factor: int) -> tuple[int, ...]:
    """ControlNet conditioning-embedding widths for an autoencoder of ``factor``: one entry
    per halving plus one (diffusers downsamples the pixel condition once between entries),
    the preset's ``widths`` cut or extended with their last value."""
    levels = int(factor).bit_length()  # factor 2^k -> k + 1 entries
    return tuple(widths[:levels]) + (widths[-1],) * max(0, levels - len(widths))


def folder_digest(path: str | Path) -> str:
    """A short hash of the files of an autoencoder folder (names and bytes; ``vae/`` of a
    pipeline folder included): what keys a stage that reuses the autoencoder."""
    import hashlib

    h = hashlib.sha256()
    root = Path(path).expanduser()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
