"""htd's ``controlnet_ldm`` training step against a plain diffusers + accelerate loop (issue 26,
item 3; target: htd / reference >= 0.95 in steps/s).

- **htd**: ``backbone.fit(...)`` for ``--steps`` optimizer steps per round, i.e. per step: draw
  a batch, random crop, augmentation (rotations/flips, HED stain and brightness jitter), the
  semantic map + crop condition built per sample, a posterior sample of the autoencoder, noise,
  ControlNet -> UNet, MSE, ``accelerator.backward``, gradient clipping, AdamW, EMA.
- **reference**: the loop of diffusers' ``examples/controlnet/train_controlnet.py`` on deep
  copies of the same UNet and ControlNet: a shuffled ``DataLoader`` over tensors made once
  (images in [-1, 1] and their conditions, built by the same builder without augmentation),
  ``vae.encode(x).latent_dist.sample() * scaling_factor`` with the same frozen autoencoder,
  ``add_noise`` of the same DDPM scheduler, ControlNet -> UNet with its down/mid residuals,
  MSE, ``accelerator.backward``, ``clip_grad_norm_``, AdamW, ``lr_scheduler.step``,
  ``zero_grad``, ``loss.item()`` for the progress bar. The UNet is trained too (htd trains UNet
  and ControlNet together; the script freezes a pretrained UNet), and the encoder hidden
  states are the model's null token (htd's model has no text encoder). It keeps an EMA of the
  weights with diffusers' ``EMAModel`` (the decay rule of htd's EMA), so like is compared with
  like; ``--no-reference-ema`` gives the script's bare loop.

Same batch, image size, precision (none on CPU), thread count, one process. Rounds alternate
which side goes first; a round's steps/s is timed from the end of its first step to the end of
its last (setup and optimizer-state creation excluded); each side's figure is the median over
rounds. First, both sides' losses on the same batch, noise and timesteps are printed (same
model, same objective). ``--profile N`` adds a cProfile of N steps of each side.

    python benchmarks/bench_train_vs_diffusers.py [--preset small] [--batch 16] [--steps 30]
        [--rounds 3] [--samples 64] [--threads N] [--no-reference-ema] [--profile N]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import os
import pstats
import statistics
import time


def reference_loss(unet, controlnet, scheduler, latents, noise, timesteps, cond, states):
    """train_controlnet.py's loss: ControlNet residuals into the UNet, MSE to the target."""
    import torch.nn.functional as F

    noisy = scheduler.add_noise(latents, noise, timesteps)
    down, mid = controlnet(noisy, timesteps, encoder_hidden_states=states,
                           controlnet_cond=cond, return_dict=False)  # fmt: skip
    pred = unet(noisy, timesteps, encoder_hidden_states=states,
                down_block_additional_residuals=down, mid_block_additional_residual=mid,
                return_dict=False)[0]  # fmt: skip
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


class ReferenceLoop:
    """The train_controlnet.py loop on ``unet`` + ``controlnet`` (both trained)."""

    def __init__(self, unet, controlnet, vae, scheduler, pixels, conds, states, *, batch_size,
                 learning_rate, ema) -> None:  # fmt: skip
        import torch
        from accelerate import Accelerator
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        self.accelerator = Accelerator(cpu=True, mixed_precision="no")
        self.vae, self.scheduler, self.states = vae, scheduler, states
        params = [*unet.parameters(), *controlnet.parameters()]
        optimizer = torch.optim.AdamW(params, lr=learning_rate, betas=(0.9, 0.999),
                                      weight_decay=1e-2, eps=1e-8)  # fmt: skip
        lr_scheduler = get_scheduler("constant", optimizer=optimizer)
        data = torch.utils.data.TensorDataset(pixels, conds)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                             drop_last=True)  # fmt: skip
        (self.unet, self.controlnet, self.optimizer, self.loader, self.lr_scheduler) = (
            self.accelerator.prepare(unet, controlnet, optimizer, loader, lr_scheduler)
        )
        self.ema = EMAModel(params, decay=0.999, foreach=True) if ema else None
        self.params, self.batches = params, iter(())

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch
            self.batches = iter(self.loader)
            return next(self.batches)

    def run(self, steps: int) -> list[float]:
        """Train ``steps`` steps; the time at the end of each."""
        import torch

        stamps = []
        self.unet.train()
        self.controlnet.train()
        for _ in range(steps):
            pixels, cond = self.next_batch()
            with self.accelerator.accumulate(self.controlnet):
                with torch.no_grad():
                    latents = self.vae.encode(pixels).latent_dist.sample()
                latents = latents * self.vae.config.scaling_factor
                noise = torch.randn_like(latents)
                t = torch.randint(0, self.scheduler.config.num_train_timesteps,
                                  (latents.shape[0],), device=latents.device).long()  # fmt: skip
                states = self.states.expand(latents.shape[0], -1, -1)
                loss = reference_loss(self.unet, self.controlnet, self.scheduler, latents,
                                      noise, t, cond, states)  # fmt: skip
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    self.accelerator.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None and self.accelerator.sync_gradients:
                self.ema.step(self.params)
            loss.detach().item()  # the script's progress bar shows it every step
            stamps.append(time.perf_counter())
        return stamps


def rate(stamps: list[float]) -> float:
    """Steps/s from the end of the first step to the end of the last."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=("tiny", "small", "paper"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-reference-ema", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile N steps of each side after the rounds")  # fmt: skip
    args = parser.parse_args()
    if args.steps < 2 or args.rounds < 1 or args.batch < 1 or args.samples < args.batch:
        parser.error("need --steps >= 2, --rounds >= 1, --batch >= 1, --samples >= --batch")
    print(f"load average before (1/5/15 min): {os.getloadavg()}", flush=True)

    import numpy as np
    import torch

    # before any thread count is set (it notes torch's default); htd draws batches ahead on a
    # background thread only while torch leaves a core free
    from htd_core.threads import all_cores

    if args.threads:
        os.environ["HTD_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    from htd_core.interfaces.latent import to_model_range
    from htd_core.testing import synthetic_sample
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.backbones.ldm.augment import Augmentation
    from htd_plugins.backbones.ldm.sampling import training_scheduler
    from htd_plugins.backbones.ldm.trainer import BatchSource
    from htd_plugins.backbones.ldm.training import diffusion_loss, step_generator
    from htd_plugins.condition_builders.crop import CropBuilder
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    backbone = ControlNetLDM(preset=args.preset)
    size = backbone.image_size
    samples = [synthetic_sample(size, seed=s) for s in range(args.samples)]
    side = size * 5 // 16  # 20 px crops at 64 px
    builder = SemanticMapBuilder() + CropBuilder(fixed_size=side, min_size=min(4, side))
    common = {"progress": False, "tensorboard": False, "batch_size": args.batch}
    backbone.fit(samples, builder, steps=1, vae_steps=1, **common)  # autoencoder and model
    parts, vae = backbone.denoiser.parts, backbone.autoencoder.module
    unet, controlnet = copy.deepcopy(parts["unet"]), copy.deepcopy(parts["controlnet"])
    states = parts["token_encoder"].null_states(1, 0).detach()
    noise_scheduler = training_scheduler(1000, "scaled_linear", backbone.config.prediction_type)

    # the same objective: both losses on one htd batch, noise and timesteps
    source = BatchSource(samples, builder, backbone.autoencoder, Augmentation(),
                         batch_size=args.batch, image_size=size, seed=0, cache=False,
                         device=torch.device("cpu"))  # fmt: skip
    latents, spatial, tokens = source.batch(0, 0, 0, 1, 1)
    with torch.no_grad():
        ours = diffusion_loss(backbone.denoiser, noise_scheduler, latents, spatial, tokens,
                              step_generator(0, 0, 0, 0, 1), 0.0)  # fmt: skip
        gen = step_generator(0, 0, 0, 0, 1)  # diffusion_loss's draws: noise, then timesteps
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        theirs = reference_loss(unet, controlnet, noise_scheduler, latents, noise, t, spatial,
                                states.expand(args.batch, -1, -1))  # fmt: skip
    ours, theirs = float(ours), float(theirs)
    print(f"same first-step loss: htd {ours:.6f} reference {theirs:.6f} "
          f"(|diff| {abs(ours - theirs):.1e})")  # fmt: skip

    pixels = to_model_range(np.stack([s.image for s in samples]))
    conds = torch.stack([builder.build(s, seed=i).spatial for i, s in enumerate(samples)])
    ema = not args.no_reference_ema
    reference = ReferenceLoop(unet, controlnet, vae, noise_scheduler, pixels, conds, states,
                              batch_size=args.batch,
                              learning_rate=backbone.preset.train.learning_rate, ema=ema)  # fmt: skip

    def run_htd(steps: int) -> list[float]:
        stamps: list[float] = []
        backbone.fit(samples, builder, steps=steps, **common,
                     callbacks=(lambda *_: stamps.append(time.perf_counter()),))  # fmt: skip
        return stamps

    sides = {"htd": run_htd, "reference": reference.run}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    what = "diffusers + accelerate" + (", EMAModel" if ema else ", no EMA")
    print(f"{args.preset} preset, batch {args.batch} x {size} px, {args.samples} samples, "
          f"{torch.get_num_threads()} of {all_cores()} cores, no mixed precision, CPU; reference: "
          f"{what}")  # fmt: skip
    ahead = torch.get_num_threads() < all_cores()  # BatchSource.draw_next's rule on CPU
    print(f"htd draws each next batch on a background thread: {'yes' if ahead else 'no'} "
          f"({'a core is free' if ahead else 'torch uses every core'})")  # fmt: skip
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            rates[name].append(rate(sides[name](args.steps)))
        print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:.3f} steps/s" for n in sides),
              flush=True)  # fmt: skip
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(f"ema update: {ema_cost(backbone, reference):.1f} ms/step (htd), "
          f"{ema_cost(None, reference):.1f} ms/step (diffusers EMAModel)")  # fmt: skip
    print(f"htd       {med['htd']:.3f} steps/s (median of {args.rounds})")
    print(f"reference {med['reference']:.3f} steps/s (median of {args.rounds})")
    print(f"ratio htd / reference = {med['htd'] / med['reference']:.3f} (target >= 0.95)")
    print(f"load average after (1/5/15 min): {os.getloadavg()}", flush=True)
    if args.profile:
        for name, fn in sides.items():
            print(f"--- cProfile of {args.profile} {name} steps (cumulative time) ---")
            print(profile(fn, args.profile))


def ema_cost(backbone, reference, calls: int = 10) -> float:
    """Milliseconds per EMA update: htd's ``EMA`` on ``backbone``'s denoiser, or (``backbone``
    None) diffusers' ``EMAModel`` on the reference's parameters."""
    from diffusers.training_utils import EMAModel

    from htd_plugins.backbones.ldm.training import EMA

    if backbone is not None:
        ema = EMA(backbone.denoiser, 0.999)
        update = lambda i: ema.update(backbone.denoiser, i)  # noqa: E731
    else:
        model = EMAModel(reference.params, decay=0.999, foreach=True)
        update = lambda i: model.step(reference.params)  # noqa: E731
    start = time.perf_counter()
    for i in range(calls):
        update(i)
    return (time.perf_counter() - start) / calls * 1000


def profile(fn, steps: int, lines: int = 25) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn(steps)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


if __name__ == "__main__":
    main()
