"""Sampling: diffusers schedulers (DDIM, DPM-Solver++) and classifier-free guidance.

The loop does what diffusers' ``StableDiffusionControlNetPipeline`` does for the same
components, scheduler and per-sample generators (initial noise, ``scale_model_input``,
``step``, decoding by ``latents / scaling_factor``), so that pipeline reproduces htd's
samples; with guidance, the null branch is the dropped condition (zero spatial condition and
null token), the one condition dropout trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from htd_core import thread_governor
from htd_core.errors import InputError
from htd_core.types import CLASS_INDEX

#: Sampler name -> (diffusers class name, extra config).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}),
    "dpmsolver++": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
}


def training_scheduler(num_train_timesteps: int, beta_schedule: str, prediction_type: str):
    """The DDPM noise schedule used for training (its config seeds the samplers)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
        clip_sample=False,
    )


def make_scheduler(name: str, base_config: dict[str, Any]):
    """A sampling scheduler ``name`` sharing the training noise schedule ``base_config``."""
    import diffusers

    if name not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    cls_name, extra = SCHEDULERS[name]
    cls = getattr(diffusers, cls_name)
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    return cls.from_config({**{k: base_config[k] for k in keys}, **extra})


@torch.no_grad()
def sample_latents(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    *,
    shape: tuple[int, int, int],
    generators: list[torch.Generator],
    num_inference_steps: int,
    guidance_scale: float,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Denoise one batch of latents.

    Args:
        predict: ``predict(latents, t, keep)`` -> model output; ``keep`` (bool per row) says which
            rows see the condition (False: the null condition).
        shape: latent channels, height, width.
        generators: one per sample: the initial noise of sample i depends only on its generator.
        guidance_scale: 1 (or less) runs the conditional branch only; > 1 adds the null branch
            and extrapolates ``null + g * (cond - null)``.
        keep: rows whose condition is present; a row without one (a null condition) is never
            guided.
    """
    from diffusers.utils.torch_utils import randn_tensor

    b = len(generators)
    keep = torch.ones(b, dtype=torch.bool) if keep is None else keep
    latents = randn_tensor((b, *shape), generator=generators, device=device, dtype=dtype)
    latents = latents * scheduler.init_noise_sigma
    scheduler.set_timesteps(num_inference_steps, device=device)
    extra = step_options(scheduler)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        out = guided_output(predict, model_input, t, keep, guidance_scale)
        latents = scheduler.step(out, t, latents, **extra, return_dict=False)[0]
        thread_governor.tick(1, "generate")
    return latents


def guided_output(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    model_input: torch.Tensor,
    t: Any,
    keep: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """One model evaluation with classifier-free guidance (see :func:`sample_latents`):
    ``null + g * (cond - null)`` with both branches in one batch when ``g > 1`` and some row
    has a condition, else the conditional branch alone."""
    device = model_input.device
    if guidance_scale > 1 and bool(keep.any()):
        both = torch.cat([model_input, model_input])
        flags = torch.cat([torch.zeros_like(keep), keep]).to(device)
        null, cond = predict(both, t, flags).chunk(2)
        return null + guidance_scale * (cond - null)
    return predict(model_input, t, keep.to(device))


def step_options(scheduler: Any) -> dict[str, Any]:
    """Keyword options of ``scheduler.step`` for deterministic sampling (DDIM's ``eta=0``)."""
    return {"eta": 0.0} if "eta" in scheduler.step.__code__.co_varnames else {}


def collate_for_generation(
    conditions: list[Any],
    channels: tuple[str, ...],
    token_names: tuple[str, ...],
    token_dim: int,
    default_size: int,
    multiple: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, tuple[int, int]]:
    """Check conditions against what the model was trained on and stack them.

    Returns (spatial B x C x H x W or None, tokens B x N x D or None, keep B, (H, W)); a null
    condition gets zeros and ``keep=False``. The size is the spatial conditions', else a null
    condition's ``meta["size"]`` (the layout it stands for), else ``default_size``.
    """
    sizes = {tuple(c.spatial.shape[1:]) for c in conditions if c.spatial is not None}
    sizes |= {tuple(c.meta["size"]) for c in conditions if c.spatial is None and "size" in c.meta}
    if len(sizes) > 1:
        raise InputError(f"conditions of one call must share a size, got {sorted(sizes)}")
    size = sizes.pop() if sizes else (default_size, default_size)
    if size[0] % multiple or size[1] % multiple:
        raise InputError(
            f"condition size {size[0]}x{size[1]} px is not a multiple of {multiple}, as this model needs"
        )
    for i, c in enumerate(conditions):
        if c.is_null:
            continue
        if c.channels != channels:
            _channel_error(i, c.channels, channels)
        if c.token_names != token_names or (c.tokens is None) != (token_dim == 0):
            raise InputError(
                f"condition {i} has tokens {list(c.token_names)} but the model was trained on "
                f"{list(token_names)}: build conditions with the builder the model was trained with"
            )
    keep = torch.tensor([not c.is_null for c in conditions])
    spatial = tokens = None
    if channels:
        spatial = torch.stack(
            [
                torch.zeros(len(channels), *size) if c.is_null else c.spatial.float()
                for c in conditions
            ]
        )
    if token_dim:
        n = len(token_names)
        tokens = torch.stack(
            [torch.zeros(n, token_dim) if c.is_null else c.tokens.float() for c in conditions]
        )
    return spatial, tokens, keep, size


def _channel_error(i: int, got: tuple[str, ...], expected: tuple[str, ...]) -> None:
    if len(got) != len(expected):
        raise InputError(
            f"condition {i} has {len(got)} spatial channels but the model was trained with "
            f"{len(expected)} ({', '.join(expected[:6])}{', ...' if len(expected) > 6 else ''}): "
            "use the condition builder and class list the model was trained with"
        )
    counts = [[c for c in names if c.startswith(f"{CLASS_INDEX}:")] for names in (got, expected)]
    if counts[0] != counts[1]:  # crop_slots: the class count is in the index channel's name
        raise InputError(
            f"condition {i} is for a class map of {counts[0]} but the model was trained on "
            f"{counts[1]}: use the class list the model was trained with"
        )
    unknown = sorted({c.split(":")[1] for c in got if c not in expected and ":" in c})
    known = sorted({c.split(":")[1] for c in expected if ":" in c})
    raise InputError(
        f"condition {i} has channels for classes {unknown} that the model was not trained on "
        f"(it knows {known}): map those classes to trained ones, or retrain"
    )
