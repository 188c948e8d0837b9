"""Training an autoencoder on patches: the one loop behind ``LatentBackbone.train_autoencoder``
(so behind ``fit``, ``htd train-vae`` and the experiment): the KL autoencoder whole, or TAEF2's
decoder alone (its encoder frozen, so the latents keep their meaning and statistics).

Losses: L1 + L2 reconstruction + ``kl_weight`` x KL (LDM's KL-regularised autoencoder,
Rombach et al. 2022; no KL for a deterministic encoder), optionally ``perceptual_weight`` x a
perceptual distance (LDM's LPIPS term, here on offline EfficientNet-Lite0 features:
:mod:`.perceptual`) and LDM's PatchGAN term (:mod:`.discriminator`). Each step draws a batch of random crops with random flips from a
generator seeded by ``(seed, step)``, so the same call gives the same weights and a run resumed
from its checkpoint continues exactly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from htd_core import thread_governor
from htd_core.errors import InputError
from htd_core.interfaces.latent import to_model_range
from htd_core.io import atomic_save_torch
from htd_core.options import check_int, check_number


@dataclass(frozen=True)
class AutoencoderTrainOptions:
    """Options of one autoencoder training (defaults: the backbone preset's, :mod:`.presets`).

    Attributes:
        steps: optimizer steps (a resumed run continues up to this number).
        batch_size: crops per step.
        learning_rate: AdamW learning rate.
        crop_size: side of the random crops in px (None: whole patches); the autoencoder is
            convolutional, trained on crops and used on whole patches.
        kl_weight: weight of the KL term.
        seed: initialisation, crops, flips and posterior samples.
        adversarial_weight: weight of LDM's PatchGAN term, times its adaptive weight (0: off;
            LDM used 0.5).
        adversarial_start: step from which that term and the discriminator's updates start.
        perceptual_weight: weight of the perceptual distance (:mod:`.perceptual`; 0: off;
            LDM weighs its LPIPS term 1).
        discriminator_learning_rate: Adam learning rate of the discriminator (None: as
            ``learning_rate``).
        checkpoint_every: steps between checkpoints (when a checkpoint file is given).

    Raises:
        InputError: a value out of range (names the option).
    """

    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 1e-3
    crop_size: int | None = None
    kl_weight: float = 1e-6
    seed: int = 0
    adversarial_weight: float = 0.0
    adversarial_start: int = 0
    discriminator_learning_rate: float | None = None
    checkpoint_every: int = 200
    perceptual_weight: float = 0.0

    def __post_init__(self) -> None:
        check_int(self.steps, "autoencoder steps", 1)
        check_int(self.batch_size, "autoencoder batch_size", 1)
        check_number(self.learning_rate, "autoencoder learning_rate", 0.0, above=True)
        if self.crop_size is not None:
            check_int(self.crop_size, "autoencoder crop_size", 1)
        check_number(self.kl_weight, "kl_weight", 0.0)
        check_int(self.seed, "seed", 0)
        check_number(self.adversarial_weight, "adversarial_weight", 0.0)
        check_int(self.adversarial_start, "adversarial_start", 0)
        check_number(self.perceptual_weight, "perceptual_weight", 0.0)
        if self.discriminator_learning_rate is not None:
            check_number(
                self.discriminator_learning_rate, "discriminator_learning_rate", 0.0, above=True
            )
        check_int(self.checkpoint_every, "checkpoint_every", 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_autoencoder_loop(
    ae: Any,
    images: np.ndarray,
    opts: AutoencoderTrainOptions,
    *,
    device: str | torch.device,
    clock: Any,
    checkpoint: str | Path | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``ae`` (a :class:`~.kl.KLAutoencoder`, or a :class:`~.taef2.TinyAutoencoder`'s
    decoder) in place on uint8 ``images`` (N x H x W x 3).

    Stops at ``opts.steps`` or when ``clock`` (:class:`~.progress.Clock`) is spent; writes an
    atomic checkpoint every ``opts.checkpoint_every`` steps and at a stop, and resumes from an
    existing one. Sets the measured latent statistics on ``ae`` (:func:`.autoencoders.calibrate`).

    Returns:
        ``steps``, ``final_loss`` (reconstruction + KL, mean of the last 10), ``scaling_factor``,
        ``seconds`` (and the discriminator's final loss and weight when adversarial).

    Raises:
        InputError: no images, a non-finite loss, or a checkpoint written without the
            adversarial term past its start.
    """
    from htd_plugins.backbones.ldm.discriminator import Adversary

    if len(images) == 0:
        raise InputError("no images to train the autoencoder on")
    from htd_plugins.backbones.ldm.autoencoders import calibrate

    vae = ae.module
    n, h, w, _ = images.shape
    if opts.crop_size is not None and opts.crop_size > min(h, w):
        raise InputError(
            f"autoencoder crop_size={opts.crop_size} px is larger than the {h} x {w} px patches: "
            f"give at most {min(h, w)}"
        )
    crop = opts.crop_size or min(h, w)
    crop -= crop % ae.factor
    params = ae.trainable(device)
    opt = torch.optim.AdamW(params, lr=opts.learning_rate, weight_decay=0.0)
    adversary = None
    if opts.adversarial_weight > 0:
        adversary = Adversary(
            crop, weight=opts.adversarial_weight, start=opts.adversarial_start, seed=opts.seed,
            device=device, learning_rate=opts.discriminator_learning_rate or opts.learning_rate,
        )  # fmt: skip
    losses: list[float] = []
    first = 0
    # what a resumed run must share with its checkpoint (the adversarial options follow their
    # own rule: the term may start after the checkpoint's step, see Adversary.load_state_dict)
    free = ("steps", "checkpoint_every", "adversarial_weight", "adversarial_start",
            "discriminator_learning_rate")  # fmt: skip
    trajectory = {k: v for k, v in opts.to_dict().items() if k not in free}
    if not opts.perceptual_weight:  # added later: checkpoints without it still resume
        trajectory.pop("perceptual_weight")
    perceptual = None
    if opts.perceptual_weight > 0:
        from htd_plugins.backbones.ldm.perceptual import PerceptualDistance

        perceptual = PerceptualDistance().to(device)
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        saved = json.loads(state.get("options", "null") or "null")
        if saved is not None and saved != json.loads(json.dumps(trajectory)):
            diff = sorted(k for k in trajectory if saved.get(k) != trajectory[k])
            raise InputError(
                f"the autoencoder checkpoint {checkpoint} was trained with other options "
                f"({', '.join(f'{k}: {saved.get(k)!r} -> {trajectory[k]!r}' for k in diff)}): "
                "rerun with those options to resume, or delete the checkpoint to start afresh"
            )
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["optimizer"])
        first = int(state["step"])
        if adversary is not None:
            adversary.load_state_dict(state, first)
        if first < opts.steps:
            _note(
                f"autoencoder: resuming from step {first} of {opts.steps} ({Path(checkpoint).name})"
            )
    step, bs = first - 1, opts.batch_size
    for step in range(first, opts.steps):
        rng = np.random.default_rng([opts.seed, step])
        idx = rng.integers(0, n, bs)
        ys, xs = rng.integers(0, h - crop + 1, bs), rng.integers(0, w - crop + 1, bs)
        batch = np.stack(
            [images[i, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs, strict=True)]
        )
        if rng.random() < 0.5:
            batch = batch[:, :, ::-1]
        x = to_model_range(np.ascontiguousarray(batch)).to(device)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        mean, std = ae.distribution(x)
        z = mean + std * torch.randn(mean.shape, generator=gen).to(device)
        recon = ae.decode(z * ae.scaling_factor)
        reconstruction = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        if perceptual is not None:
            reconstruction = reconstruction + opts.perceptual_weight * perceptual(recon, x)
        loss = total = reconstruction + opts.kl_weight * kl_divergence(mean, std)
        adversarial = adversary is not None and step >= adversary.start
        if adversarial:
            total = loss + adversary.generator_term(recon, reconstruction, ae.last_layer())
        if not torch.isfinite(total):
            raise InputError(
                f"autoencoder loss became {total.item()} at step {step}: lower learning_rate"
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if adversarial:
            adversary.update(x, recon)
        losses.append(float(loss.detach()))  # reconstruction (+ perceptual) + KL, no adversary
        thread_governor.tick(1, "autoencoder")
        if progress is not None:
            progress(step, losses[-1])
        stop = clock.expired()
        if checkpoint is not None and ((step + 1) % opts.checkpoint_every == 0 or stop):
            saved = {"step": step + 1, "vae": vae.state_dict(), "optimizer": opt.state_dict(),
                     "options": json.dumps(trajectory)}  # fmt: skip
            if adversary is not None:
                saved.update(adversary.state_dict())
            atomic_save_torch(checkpoint, saved)
        if stop:
            break
    vae.eval().requires_grad_(False)
    calibrate(ae, images, seed=opts.seed)
    return {
        "steps": step + 1,
        "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "scaling_factor": ae.scaling_factor,
        "seconds": round(clock.elapsed, 1),
        **(adversary.summary() if adversary is not None else {}),
    }


def kl_divergence(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(N(mean, std^2) || N(0, 1)) summed over latent elements (as
    diffusers' ``DiagonalGaussianDistribution.kl``); 0 for a deterministic encoder (std 0)."""
    if not bool((std > 0).any()):
        return mean.new_zeros(())
    var = std.pow(2)
    return 0.5 * (mean.pow(2) + var - 1.0 - torch.log(var)).sum(dim=(1, 2, 3)).mean()


def _note(text: str) -> None:
    """One line on stderr that does not break a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)
