"""Denoise one latent canvas with overlapping windows, and decode it in overlapping tiles.

At every denoising step each window of the model's training size is predicted from its part
of the noisy canvas and its own condition; the predictions are blended with the smooth
weights of :mod:`windows` into one canvas-sized prediction, and the scheduler takes one step
on the whole canvas (MultiDiffusion, Bar-Tal et al. 2023; for DDIM and DPM-Solver++, whose
steps are linear in the prediction, this equals blending each window's own step). Memory:
the canvas, its noise and the blended prediction (C x h x w float32 each, plus the
scheduler's history: two more for DPM-Solver++), one batch of windows, and a band of decoded
rows; never a float image of the slide.

The state after every step (canvas, scheduler state, step) is written atomically to a
checkpoint, so an interrupted run continues where it stopped with the same result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core.errors import InputError
from htd_plugins.slide_synthesis.windows import WindowPlan, axis_starts, axis_weights

STATE = "state.pt"
SETTINGS = "settings.json"


class Checkpoint:
    """Per-step state of one slide in ``folder`` (created on first save; removed when done).

    ``settings`` (JSON-serialisable) must match the folder's to resume; otherwise the run is
    refused with the keys that differ.
    """

    def __init__(self, folder: str | Path, settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.settings = json.loads(json.dumps(settings, default=str))

    def load(self) -> dict[str, Any] | None:
        saved = self.folder / SETTINGS
        if not saved.is_file():
            return None
        old = json.loads(saved.read_text())
        if old != self.settings:
            diff = sorted(k for k in {*old, *self.settings} if old.get(k) != self.settings.get(k))
            raise InputError(
                f"{self.folder} holds an interrupted run with other settings ({', '.join(diff)}): "
                "rerun with the same settings to resume, or remove that folder to start afresh"
            )
        state = self.folder / STATE
        return torch.load(state, weights_only=True) if state.is_file() else None

    def save(self, step: int, latents: torch.Tensor, scheduler: Any) -> None:
        from htd_core.io import atomic_save_torch, atomic_write_json

        if not (self.folder / SETTINGS).is_file():
            atomic_write_json(self.folder / SETTINGS, self.settings)
        state = {"step": step, "latents": latents.cpu(), "scheduler": scheduler_state(scheduler)}
        atomic_save_torch(self.folder / STATE, state)

    def remove(self) -> None:
        for name in (STATE, SETTINGS):
            (self.folder / name).unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """The scheduler's mutable state: attributes that are tensors, numbers, None or lists of
    them (DPM-Solver++'s model-output history and step counters; DDIM has only counters)."""

    def plain(v: Any) -> bool:
        return v is None or isinstance(v, torch.Tensor | bool | int | float)

    return {
        k: (list(v) if isinstance(v, list | tuple) else v)
        for k, v in vars(scheduler).items()
        if plain(v) or (isinstance(v, list | tuple) and all(plain(x) for x in v))
    }


def restore_scheduler(scheduler: Any, state: dict[str, Any], device: torch.device) -> None:
    """Put a :func:`scheduler_state` back: a tensor goes where the fresh scheduler keeps that
    attribute (after ``set_timesteps``), a list's tensors (model outputs) to ``device``."""
    for key, value in state.items():
        current = getattr(scheduler, key, None)
        if isinstance(value, torch.Tensor):
            value = value.to(current.device if isinstance(current, torch.Tensor) else device)
        elif isinstance(value, list):
            value = [v.to(device) if isinstance(v, torch.Tensor) else v for v in value]
        setattr(scheduler, key, value)


@torch.no_grad()
def denoise_canvas(
    backbone: Any,
    build: Callable[[int], Any],
    plan: WindowPlan,
    options: Any,
    *,
    checkpoint: Checkpoint | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The denoised latent canvas, 1 x C x ``plan.height`` x ``plan.width``.

    Args:
        backbone: an :class:`htd_core.LatentBackbone` (``predict_noise``, ``latent_shape``,
            ``sampling_scheduler``).
        build: window index -> its condition.
        plan: windows in latent cells (side = model image size / autoencoder factor).
        options: the :class:`htd_core.GenerationOptions` of the slide (resolved by
            ``Pipeline.generation_options``): the canvas noise comes from
            ``torch.Generator().manual_seed(options.seed)``; ``batch_size`` windows per call.
        callback: ``callback(step, total)`` after every completed step (Python only).
    """
    from tqdm.auto import tqdm

    device = backbone.device
    sched = backbone.sampling_scheduler(options.scheduler)
    sched.set_timesteps(options.num_inference_steps, device=device)
    f = backbone.require_autoencoder().factor
    channels = backbone.latent_shape(plan.window * f, plan.window * f)[0]
    shape = (1, channels, plan.height, plan.width)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(options.seed))
    latents = (noise * sched.init_noise_sigma).to(device)
    start = 0
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        start, latents = int(state["step"]), state["latents"].to(device)
        restore_scheduler(sched, state["scheduler"], device)
    w = plan.window
    total = sched.timesteps.shape[0]
    weight_sum = torch.from_numpy(plan.weight_sum()).to(device)
    bar = tqdm(
        total=total * len(plan), initial=start * len(plan), unit="window", disable=not progress,
        desc=f"slide {plan.grid[0]}x{plan.grid[1]} windows x {total} steps",
    )  # fmt: skip
    with bar:
        for k in range(start, total):
            t = sched.timesteps[k]
            model_input = sched.scale_model_input(latents, t)
            blended = torch.zeros_like(latents)
            for batch in plan.batches(options.batch_size):
                where = [plan.position(i) for i in batch]
                x = torch.cat([model_input[:, :, y : y + w, c : c + w] for y, c in where])
                out = backbone.predict_noise(
                    x, t, [build(i) for i in batch], guidance_scale=options.guidance_scale
                )
                for j, (i, (y, c)) in enumerate(zip(batch, where, strict=True)):
                    weight = torch.from_numpy(plan.weight(i)).to(device)
                    blended[0, :, y : y + w, c : c + w] += out[j] * weight
                bar.update(len(batch))
            # DDIM's default eta=0: deterministic, as Backbone.generate samples
            latents = sched.step(blended / weight_sum, t, latents, return_dict=False)[0]
            if checkpoint is not None:
                checkpoint.save(k + 1, latents, sched)
            if callback is not None:
                callback(k + 1, total)
    return latents


@torch.no_grad()
def decode_rows(
    backbone: Any,
    latents: torch.Tensor,
    *,
    tile: int,
    overlap: float,
    batch_size: int = 4,
) -> Iterator[np.ndarray]:
    """Decode the canvas in overlapping tiles, blended with the same smooth weights; yields
    uint8 bands R x W x 3 (W = canvas width x vae factor) from top to bottom, each as soon
    as no later tile row touches it.

    Args:
        tile: tile side in latent cells (capped at the canvas sides).
        overlap: fraction of the tile shared with neighbours (0: plain tiles, no blending).
    """
    from htd_core.interfaces.latent import to_uint8

    f = backbone.require_autoencoder().factor
    _, _, h, w = latents.shape
    tile = min(int(tile), h, w)
    if tile < 1:
        raise InputError(f"decode tile {tile} must be >= 1 latent cell")
    ys = axis_starts(h, tile, overlap) * f
    xs = axis_starts(w, tile, overlap) * f
    side = tile * f
    wy, wx = axis_weights(ys, side), axis_weights(xs, side)
    acc = np.zeros((0, w * f, 3), np.float32)
    wsum = np.zeros((0, w * f, 1), np.float32)
    top = 0  # image row of acc[0]
    for r, y in enumerate(ys):
        need = int(y) + side - top
        if need > acc.shape[0]:
            grow = need - acc.shape[0]
            acc = np.concatenate([acc, np.zeros((grow, w * f, 3), np.float32)])
            wsum = np.concatenate([wsum, np.zeros((grow, w * f, 1), np.float32)])
        for b in range(0, len(xs), batch_size):
            cols = xs[b : b + batch_size]
            z = torch.cat(
                [latents[:, :, y // f : y // f + tile, x // f : x // f + tile] for x in cols]
            )
            images = backbone.decode_float(z).float().permute(0, 2, 3, 1).cpu().numpy()
            for j, x in enumerate(cols):
                weight = np.outer(wy[r], wx[b + j]).astype(np.float32)[..., None]
                rows = slice(int(y) - top, int(y) - top + side)
                acc[rows, x : x + side] += images[j] * weight
                wsum[rows, x : x + side] += weight
        done = (int(ys[r + 1]) if r + 1 < len(ys) else h * f) - top
        band = torch.from_numpy(acc[:done] / wsum[:done]).permute(2, 0, 1)[None]
        yield to_uint8(band)[0]
        acc, wsum, top = acc[done:], wsum[done:], top + done
