"""The accelerate loop that trains a denoiser on the micro-batches of :mod:`.trainer`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from htd_core import thread_governor
from htd_core.errors import InputError
from htd_plugins.backbones.ldm.checkpoint import (
    config_diff,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from htd_plugins.backbones.ldm.progress import Clock
from htd_plugins.backbones.ldm.trainer import BatchSource
from htd_plugins.backbones.ldm.training import (
    EMA,
    NonFiniteLossError,
    TrainOptions,
    check_finite,
    choose_mixed_precision,
    diffusion_loss,
    step_generator,
)


def train_denoiser(
    denoiser: torch.nn.Module,
    noise_scheduler: Any,
    source: BatchSource,
    opts: TrainOptions,
    *,
    accelerator: Any,
    learning_rate: float,
    warmup_steps: int,
    condition_dropout: float,
    config: dict[str, Any],
    clock: Clock | None = None,
) -> tuple[dict[str, Any], EMA | None]:
    """Run (or resume) the optimisation; returns a summary and the EMA of the weights.

    Stops at ``opts.steps`` or when ``clock`` is spent (default: ``opts.max_minutes`` from
    now; ``fit`` passes the clock of the whole fit, so the autoencoder's time counts).
    """
    from htd_plugins.backbones.ldm.progress import BoundedProgress

    optimizer = torch.optim.AdamW(
        denoiser.parameters(), lr=learning_rate, weight_decay=opts.weight_decay, foreach=True
    )
    ema = EMA(denoiser, opts.ema_decay) if opts.ema_decay > 0 else None
    model, optimizer = accelerator.prepare(denoiser, optimizer)
    start, last_ckpt = 0, None
    if opts.output_dir and opts.resume and list_checkpoints(opts.output_dir):
        last_ckpt = str(list_checkpoints(opts.output_dir)[-1])
        state = load_checkpoint(last_ckpt)
        diff = config_diff(state["config"], config)
        if diff:
            raise InputError(
                f"cannot resume {opts.output_dir}: its checkpoint was trained with a different "
                f"configuration ({'; '.join(diff)}). Use the original options, another "
                "output_dir, or resume=false after deleting the checkpoints"
            )
        accelerator.unwrap_model(model).load_state_dict(state["denoiser"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start = int(state["step"])
        check_stream(state.get("stream"), accelerator.num_processes, start, last_ckpt)
    if opts.tensorboard and opts.output_dir:
        accelerator.init_trackers("htd")
    unwrapped = accelerator.unwrap_model(model)
    rank, world, accum = (
        accelerator.process_index,
        accelerator.num_processes,
        opts.gradient_accumulation_steps,
    )
    clock = clock if clock is not None else Clock.minutes(opts.max_minutes)
    losses, done = [], start
    show = opts.progress and accelerator.is_main_process
    bar = BoundedProgress("train", opts.steps, clock, start=start, disable=not show)
    if show and start:
        bar.write(f"train: resuming from step {start} of {opts.steps} ({last_ckpt})")
    began = Clock.now()  # this stage's own time (the clock may count the autoencoder's too)
    model.train()
    for step in range(start, opts.steps):
        lr = learning_rate * min(1.0, (step + 1) / warmup_steps) if warmup_steps else learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for micro in range(accum):
            with accelerator.accumulate(model):
                latents, spatial, tokens = source.batch(step, micro, rank, world, accum)
                gen = step_generator(opts.seed, step, micro, rank, 1)
                with accelerator.autocast():
                    loss = diffusion_loss(
                        model,
                        noise_scheduler,
                        latents,
                        spatial,
                        tokens,
                        gen,
                        condition_dropout,
                        opts.snr_gamma,
                    )
                check_finite(loss, step, last_ckpt)
                source.draw_next(step, micro, rank, world, accum)  # beside the backward pass
                accelerator.backward(loss)
                if accelerator.sync_gradients and opts.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_loss += float(loss.detach()) / accum
        if ema is not None:
            ema.update(unwrapped, step)
        done = step + 1
        thread_governor.tick(1, "train")
        losses.append(step_loss)
        bar.update(done, loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.1e}")
        if (
            opts.tensorboard
            and opts.output_dir
            and (done % opts.log_every == 0 or done == opts.steps)
        ):
            accelerator.log({"train/loss": step_loss, "train/lr": lr}, step=done)
        stop = clock.expired()
        if opts.output_dir and (done % opts.checkpoint_every == 0 or done == opts.steps or stop):
            last_ckpt = (
                _checkpoint(accelerator, unwrapped, optimizer, ema, done, config, opts) or last_ckpt
            )
        for callback in opts.callbacks:
            callback(done, step_loss, unwrapped)
        if stop:
            break
    bar.close()
    if opts.tensorboard and opts.output_dir:
        accelerator.end_training()
    elapsed = Clock.now() - began
    summary = {
        "start_step": start,
        "steps": done,
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "seconds": round(elapsed, 1),
        "steps_per_second": round((done - start) / elapsed, 3)
        if elapsed > 0 and done > start
        else None,
        "stopped_early": done < opts.steps,
        "last_checkpoint": last_ckpt,
    }
    return summary, ema


def _checkpoint(accelerator, unwrapped, optimizer, ema, step, config, opts) -> str | None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    if not all(torch.isfinite(p).all() for p in unwrapped.parameters()):
        raise NonFiniteLossError(
            f"the weights became NaN/inf by step {step}; not saving them (the last good checkpoint "
            f"in {opts.output_dir}/checkpoints is kept). Lower learning_rate"
        )
    state = {
        "step": step,
        "config": config,
        "denoiser": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        # where each process's data stream stands (micro-batches drawn; training_data.py)
        "stream": {
            "processes": accelerator.num_processes,
            "micro_batches": step * opts.gradient_accumulation_steps,
        },  # fmt: skip
    }
    return str(save_checkpoint(opts.output_dir, step, state, keep_last=opts.keep_checkpoints))


def check_stream(stream: dict | None, processes: int, step: int, checkpoint: str | None) -> None:
    """Warn when a run resumes with another number of processes than its checkpoint's: each
    process's samples after ``step`` then differ from an uninterrupted run's (the data of a
    micro-batch is addressed by process, :mod:`htd_core.training_data`)."""
    if stream and int(stream["processes"]) != processes:
        import warnings

        warnings.warn(
            f"resuming {checkpoint} (step {step}, {stream['processes']} process(es)) with "
            f"{processes}: training continues, but not on the samples an uninterrupted run "
            f"would have read; resume with {stream['processes']} for those",
            stacklevel=2,
        )


def make_accelerator(opts: TrainOptions, device: torch.device):
    """An ``Accelerator`` for this run on ``device`` (the backbone's ``device`` option).

    A CPU ``device`` keeps training on the CPU even where CUDA is present (accelerate's
    ``cpu=True``), and ``mixed_precision="auto"`` then means none. Otherwise the launch
    configuration decides (one process: the current CUDA device; ``accelerate launch``: one
    device per process). accelerate keeps one process-wide state that refuses a different
    device or precision later; in a single process without a launcher that state is reset, so
    a second fit in one session can change them.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, ProjectConfiguration

    cpu = torch.device(device).type == "cpu"
    precision = "no" if cpu and opts.mixed_precision == "auto" else opts.mixed_precision
    precision = choose_mixed_precision(precision)
    if PartialState._shared_state and PartialState().distributed_type == DistributedType.NO:
        on_cpu = PartialState().device.type == "cpu"
        previous = AcceleratorState._shared_state.get("_mixed_precision", precision)
        if on_cpu != cpu or previous != precision:
            AcceleratorState._reset_state(reset_partial_state=True)
    logs = f"{opts.output_dir}/logs" if opts.output_dir else None
    return Accelerator(
        cpu=cpu,
        gradient_accumulation_steps=opts.gradient_accumulation_steps,
        mixed_precision=precision,
        log_with="tensorboard" if (opts.tensorboard and opts.output_dir) else None,
        project_config=ProjectConfiguration(project_dir=opts.output_dir, logging_dir=logs),
    )
