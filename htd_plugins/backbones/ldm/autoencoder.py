"""The KL autoencoder of the latent diffusion backbones: build, load, train, scale.

No pretrained histology autoencoder can be downloaded here, so a small ``AutoencoderKL`` is
trained on the patches themselves (``htd train-vae``, or automatically by ``fit``); a local
diffusers folder (or a hub id when online) can be loaded instead. Latents are multiplied by a
scaling factor measured on the training patches (1 / std of the latents, as Stable Diffusion
chose its 0.18215), stored in the autoencoder's config so diffusers pipelines use it too.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from htd_core.errors import InputError
from htd_core.io import atomic_save_torch


def build_vae(config: dict[str, Any], image_size: int, seed: int = 0):
    """A freshly initialised ``AutoencoderKL`` of ``config`` (seeded)."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**config, sample_size=image_size)


def load_vae(source: str | Path):
    """Load an ``AutoencoderKL`` from a local diffusers folder (or its ``vae/`` subfolder), or
    from a hub id when the hub is reachable."""
    from diffusers import AutoencoderKL

    path = Path(source).expanduser()
    if path.exists():
        if (path / "config.json").is_file():
            return AutoencoderKL.from_pretrained(path)
        if (path / "vae" / "config.json").is_file():
            return AutoencoderKL.from_pretrained(path, subfolder="vae")
        raise InputError(
            f"autoencoder folder {path} has no config.json (nor vae/config.json): give a folder "
            "written by `htd train-vae` or by diffusers' save_pretrained"
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in str(source):
        raise InputError(
            f"autoencoder {str(source)!r} is not a local folder and the hub is offline "
            "(HF_HUB_OFFLINE=1): train one with `htd train-vae` and pass its folder"
        )
    try:
        return AutoencoderKL.from_pretrained(str(source), subfolder="vae")
    except OSError:
        return AutoencoderKL.from_pretrained(str(source))


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float N x 3 x H x W in [-1, 1] -> uint8 N x H x W x 3 (diffusers' rounding)."""
    x = (x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (x * 255).round().astype(np.uint8)


@torch.no_grad()
def measure_scaling_factor(vae, images: np.ndarray, batch_size: int = 32, seed: int = 0) -> float:
    """1 / std of posterior samples of up to 256 ``images`` (uint8 N x H x W x 3)."""
    gen = torch.Generator().manual_seed(seed)
    device = vae.device
    latents = []
    for start in range(0, min(len(images), 256), batch_size):
        x = to_model_range(images[start : start + batch_size]).to(device, vae.dtype)
        dist = vae.encode(x).latent_dist
        noise = torch.randn(dist.mean.shape, generator=gen).to(device, vae.dtype)
        latents.append((dist.mean + dist.std * noise).float().cpu())
    std = float(torch.cat(latents).std())
    if not math.isfinite(std) or std <= 0:
        raise InputError(f"the autoencoder's latents have std {std}: it is broken (retrain it)")
    return 1.0 / std


def train_vae(
    vae,
    images: np.ndarray,
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    kl_weight: float = 1e-6,
    crop_size: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Callable[[int, float], None] | None = None,
    max_seconds: float | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
    clock: Any = None,
    adversarial_weight: float = 0.0,
    adversarial_start: int = 0,
    discriminator_learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train ``vae`` in place on uint8 ``images`` (N x H x W x 3) with L1 + L2 + KL losses.

    Each step draws a batch of random crops (``crop_size``; the autoencoder is convolutional, so
    it is trained on crops and used on whole patches) with random flips, from a generator
    seeded by ``(seed, step)``: the same call gives the same weights, and a run resumed from
    ``checkpoint`` (written atomically every ``checkpoint_every`` steps) continues exactly.
    Training stops at ``steps`` or when ``max_seconds`` (or the given ``clock``, a
    :class:`~htd_plugins.backbones.ldm.training.Clock`) is spent.
    With ``adversarial_weight`` > 0, from step ``adversarial_start`` on, a seeded PatchGAN
    discriminator (learning rate ``discriminator_learning_rate``, default ``learning_rate``)
    adds LDM's adversarial term (:mod:`~htd_plugins.backbones.ldm.discriminator`); its state is
    checkpointed too. At 0 (the default) nothing changes: same draws, same weights.
    Returns a summary (with ``final_discriminator_loss`` when adversarial) and sets the
    measured scaling factor in the autoencoder's config. Raises InputError on no images or an
    adversarial option out of range.
    """
    from htd_plugins.backbones.ldm.discriminator import Adversary, check_options
    from htd_plugins.backbones.ldm.training import Clock

    if len(images) == 0:
        raise InputError("no images to train the autoencoder on")
    check_options(adversarial_weight, adversarial_start, discriminator_learning_rate)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vae.to(device).train()
    n, h, w, _ = images.shape
    crop = min(crop_size or h, h, w)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    crop -= crop % factor
    opt = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    adversary = None
    if adversarial_weight > 0:
        adversary = Adversary(
            crop, weight=adversarial_weight, start=adversarial_start, seed=seed, device=device,
            learning_rate=discriminator_learning_rate or learning_rate,
        )  # fmt: skip
    losses: list[float] = []
    clock = clock if clock is not None else Clock(max_seconds)
    first = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["optimizer"])
        first = int(state["step"])
        if adversary is not None:
            adversary.load_state_dict(state, first)
        if first < steps:
            _note(f"autoencoder: resuming from step {first} of {steps} ({Path(checkpoint).name})")
    step = first - 1
    for step in range(first, steps):
        rng = np.random.default_rng([seed, step])
        idx = rng.integers(0, n, batch_size)
        ys, xs = (
            rng.integers(0, h - crop + 1, batch_size),
            rng.integers(0, w - crop + 1, batch_size),
        )
        batch = np.stack(
            [images[i, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs, strict=True)]
        )
        if rng.random() < 0.5:
            batch = batch[:, :, ::-1]
        x = to_model_range(np.ascontiguousarray(batch)).to(device)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(device)
        recon = vae.decode(z).sample
        reconstruction = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        loss = total = reconstruction + kl_weight * dist.kl().mean()
        adversarial = adversary is not None and step >= adversary.start
        if adversarial:
            total = loss + adversary.generator_term(
                recon, reconstruction, vae.decoder.conv_out.weight
            )
        if not torch.isfinite(total):
            raise InputError(
                f"autoencoder loss became {total.item()} at step {step}: lower learning_rate"
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if adversarial:
            adversary.update(x, recon)
        losses.append(float(loss.detach()))  # reconstruction + KL, with or without adversary
        if progress is not None:
            progress(step, losses[-1])
        stop = clock.expired()
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or stop):
            saved = {"step": step + 1, "vae": vae.state_dict(), "optimizer": opt.state_dict()}
            if adversary is not None:
                saved.update(adversary.state_dict())
            atomic_save_torch(checkpoint, saved)
        if stop:
            break
    vae.eval()
    scaling = measure_scaling_factor(vae, images, seed=seed)
    vae.register_to_config(scaling_factor=scaling)
    return {
        "steps": step + 1,
        "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "scaling_factor": scaling,
        "seconds": round(clock.elapsed, 1),
        **(adversary.summary() if adversary is not None else {}),
    }


@torch.no_grad()
def reconstruction_error(vae, images: np.ndarray, batch_size: int = 32) -> float:
    """Mean absolute error in [0, 255] units of encode -> decode (posterior mean)."""
    errors = []
    for start in range(0, len(images), batch_size):
        x = to_model_range(images[start : start + batch_size]).to(vae.device, vae.dtype)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample
        errors.append((recon.float() - x.float()).abs().mean().item() * 127.5)
    return float(np.mean(errors))


@torch.no_grad()
def reconstruct_images(
    vae, images: np.ndarray, multiple: int = 8, batch_size: int = 16
) -> np.ndarray:
    """uint8 N x H x W x 3 -> encode (posterior mean) -> decode -> uint8, same shape.

    Sides that are not a multiple of ``multiple`` (the autoencoder's downsampling) are padded
    by reflection to the next multiple and the padding is cut off again, so every pixel of
    the input has its reconstruction.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(
            f"reconstruct: expected uint8 images N x H x W x 3, got {images.dtype} {images.shape}"
        )
    h, w = images.shape[1:3]
    pad_h, pad_w = -h % multiple, -w % multiple
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_range(images[start : start + batch_size]).to(vae.device, vae.dtype)
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(to_uint8(recon[:, :, :h, :w]))
    return np.concatenate(out) if out else images.copy()


def prepare_vae(
    backbone: Any,
    images: np.ndarray,
    opts: Any,
    device: torch.device,
    is_main: bool = True,
    clock: Any = None,
) -> dict[str, Any]:
    """Give ``backbone`` its autoencoder: the one of a run being resumed (``output_dir/vae``),
    the ``vae`` option's, or a new one trained on ``images``; returns a summary. (With several
    processes each trains the same seeded autoencoder; train it once with ``htd train-vae``.)

    A new autoencoder trains for ``opts.vae_steps`` or until its share of ``clock`` (the whole
    fit's bound; the share is ``TrainOptions.vae_seconds``, counted from when it starts) is
    spent. Training, and the autoencoder given to ``backbone``, are on ``device`` (the fit's
    accelerator's: the backbone's ``device`` option).
    """
    from htd_core.io import atomic_write_folder
    from htd_plugins.backbones.ldm.progress import BoundedProgress
    from htd_plugins.backbones.ldm.training import Clock

    if backbone.vae is not None:  # a second fit (or a loaded model): on this fit's device
        backbone.vae = backbone.vae.to(device).eval().requires_grad_(False)
        return {"source": "existing", "scaling_factor": float(backbone.vae.config.scaling_factor)}
    options, preset = backbone.options, backbone.preset
    saved = Path(opts.output_dir) / "vae" if opts.output_dir else None
    if saved is not None and opts.resume and (saved / "config.json").is_file():
        vae, summary = load_vae(saved), {"source": str(saved)}
        if opts.progress:
            _note(f"autoencoder: reusing the one trained before in {saved}")
    elif options["vae"]:
        vae, summary = load_vae(options["vae"]).to(device), {"source": options["vae"]}
        vae.register_to_config(
            scaling_factor=options["scaling_factor"] or measure_scaling_factor(vae, images)
        )
    else:
        vae = build_vae(preset.vae, backbone.image_size, seed=opts.seed)
        clock = (clock if clock is not None else Clock(None)).stage(opts.vae_seconds())
        steps = opts.vae_steps or 0
        bar = BoundedProgress("autoencoder", steps, clock, disable=not opts.progress)
        summary = train_vae(
            vae, images, steps=steps, batch_size=opts.batch_size,
            learning_rate=opts.vae_learning_rate, crop_size=preset.train.get("vae_crop_size"),
            seed=opts.seed, device=device, clock=clock,
            progress=lambda step, loss: bar.update(step + 1, loss=f"{loss:.4f}"),
            adversarial_weight=opts.vae_adversarial_weight,
            adversarial_start=opts.vae_adversarial_start,
        )  # fmt: skip
        bar.close()
        if options["scaling_factor"]:
            vae.register_to_config(scaling_factor=options["scaling_factor"])
    if saved is not None and is_main and not (saved / "config.json").is_file():
        atomic_write_folder(saved, vae.save_pretrained, kind="autoencoder")
    backbone.vae = vae.to(device).eval().requires_grad_(False)
    return {**summary, "scaling_factor": float(vae.config.scaling_factor)}


def _note(text: str) -> None:
    """One line on stderr that does not break a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)
