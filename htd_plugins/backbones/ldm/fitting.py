"""``fit`` of the latent diffusion backbones: the autoencoder (reused, loaded or trained by
``train_autoencoder``), then the denoiser on accelerate (:mod:`.trainer`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core.errors import InputError
from htd_core.interfaces import ConditionBuilder
from htd_core.types import TissueSample

#: The autoencoder's checkpoint inside a fit's ``output_dir`` while it trains (removed once
#: ``output_dir/vae`` is written).
AUTOENCODER_CHECKPOINT = "autoencoder-checkpoint.pt"
#: Samples of a shard stream the autoencoder trains and calibrates on (read once, spread over
#: the shards; a list in memory gives all of its samples).
AUTOENCODER_SAMPLES = 2048


def fit_latent_diffusion(
    backbone: Any, samples: Iterable[TissueSample], builder: ConditionBuilder, options: dict
) -> dict[str, Any]:
    """Train ``backbone`` (a :class:`~.base.LatentDiffusionBackbone`) on ``samples`` with
    conditions from ``builder``; ``options`` are ``TrainOptions`` fields over the preset's.

    ``max_minutes`` bounds the whole call: reading the samples, the autoencoder (its share:
    ``TrainOptions.vae_seconds``) and the diffusion training, which gets what is left.
    Training runs on the backbone's ``device`` (``cpu`` stays on the CPU where CUDA is
    present), and the trained denoiser and autoencoder are left there, unwrapped from
    accelerate's mixed-precision autocast: generation right after ``fit`` equals generation
    by the saved and reloaded model.
    """
    from htd_core.options import override
    from htd_plugins.backbones.ldm.augment import Augmentation
    from htd_plugins.backbones.ldm.loop import make_accelerator, train_denoiser
    from htd_plugins.backbones.ldm.modules import class_embedding_for, class_index_channel
    from htd_plugins.backbones.ldm.progress import Clock
    from htd_plugins.backbones.ldm.sampling import training_scheduler
    from htd_plugins.backbones.ldm.trainer import BatchSource, prepare_samples, step_transform

    given = {k: v for k, v in options.items() if v is not None}  # None: the preset's
    opts = override(backbone.preset.train, given, "fit")
    clock = Clock.minutes(opts.max_minutes)  # the whole fit's wall-time bound
    augment = (
        opts.augment
        if isinstance(opts.augment, Augmentation)
        else Augmentation(**(opts.augment or {}))
    )
    size = backbone.image_size
    data = prepare_samples(samples, size, opts.max_samples)
    if data.streamed and opts.cache_latents:
        raise InputError(
            "cache_latents keeps every sample's latents in memory: train from shards with "
            "cache_latents=false (latents are then encoded per batch)"
        )
    for_step = step_transform(samples)  # e.g. the curriculum's granularity at step t
    class_map = data.class_map
    if backbone.denoiser is not None and backbone.class_map not in (None, class_map):
        where = getattr(data, "root", "the training samples")
        raise InputError(
            f"{where} holds classes {list(class_map.names)}, but the model was trained on "
            f"{list(backbone.class_map.names)}: train a new model, or use samples of its classes"
        )
    channels = tuple(builder.channels(class_map))
    token_names = tuple(builder.token_names(class_map))
    token_dim = int(builder.token_dim or 0) if token_names else 0
    class_index_channel(channels)  # one at most: refused before the autoencoder trains
    config = {
        **{k: v for k, v in backbone.options.items() if k != "device"},
        "backbone": backbone.name, "channels": list(channels), "token_names": list(token_names),
        "token_dim": token_dim, "num_samples": len(data), "data": data.fingerprint(),
        "for_step": None if for_step is None else for_step.__qualname__,
        **{k: v for k, v in opts.trajectory_config().items() if k != "augment"},
        "augment": vars(augment),
    }  # fmt: skip
    accelerator = make_accelerator(opts, backbone.device)
    # the autoencoder's images: all samples in memory; a stream's AUTOENCODER_SAMPLES, spread
    subset = data.spread(AUTOENCODER_SAMPLES) if data.streamed else data
    images = np.stack([d.image[:size, :size] for d in subset])
    ae_summary = prepare_autoencoder(
        backbone, images, opts, accelerator.device, accelerator.is_main_process, clock
    )
    if backbone.denoiser is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            embedding = class_embedding_for(channels, backbone.config.class_embedding_dim)
            width = len(channels) + (embedding.added_channels if embedding is not None else 0)
            parts = backbone.build_parts(width, token_dim, backbone.autoencoder.latent_channels)
            if embedding is not None:  # crop_slots' class-index channel, embedded
                parts["class_embedding"] = embedding
            backbone.denoiser = backbone.make_denoiser(parts)
    elif (channels, token_names) != (backbone.channels, backbone.token_names):
        raise InputError(
            f"{backbone.name} was trained on channels {list(backbone.channels)}; cannot continue "
            f"with {list(channels)}: create a new backbone"
        )
    backbone.channels, backbone.token_names, backbone.token_dim = channels, token_names, token_dim
    backbone.class_map = class_map
    backbone.mpp = data.median_mpp()
    noise = training_scheduler(1000, "scaled_linear", backbone.config.prediction_type)
    backbone.denoiser.to(accelerator.device)
    source = BatchSource(
        data, builder, backbone.autoencoder, augment, batch_size=opts.batch_size, image_size=size,
        seed=opts.seed, cache=opts.cache_latents, device=accelerator.device, for_step=for_step,
    )  # fmt: skip
    if opts.sample_every and opts.tensorboard and opts.output_dir:  # pictures in TensorBoard
        from htd_plugins.backbones.ldm.sample_images import SampleImages

        logger = SampleImages(backbone, data.spread(opts.sample_count), builder, accelerator, every=opts.sample_every,
                              last_step=opts.steps, count=opts.sample_count, seed=opts.seed)  # fmt: skip
        opts = dataclasses.replace(opts, callbacks=(*opts.callbacks, logger))
    try:
        summary, ema = train_denoiser(
            backbone.denoiser, noise, source, opts, accelerator=accelerator,
            learning_rate=opts.learning_rate, warmup_steps=opts.warmup_steps or 0,
            condition_dropout=backbone.config.condition_dropout, config=config, clock=clock,
        )  # fmt: skip
    finally:
        source.close()  # its thread drawing micro-batches ahead
    # without accelerate's autocast wrapper of forward: generation now runs as after a reload
    backbone.denoiser = accelerator.unwrap_model(backbone.denoiser, keep_fp32_wrapper=False)
    if ema is not None:
        ema.copy_to(backbone.denoiser)
    backbone.denoiser.to(backbone.device).eval()
    backbone.autoencoder.to(backbone.device)
    summary = {
        **summary,
        "vae": ae_summary,
        "backbone": backbone.name,
        "preset": backbone.preset.name,
    }
    backbone.history.append({k: v for k, v in summary.items() if k != "last_checkpoint"})
    if opts.output_dir and accelerator.is_main_process:
        summary["model_dir"] = str(Path(opts.output_dir) / "model")
        backbone.save(summary["model_dir"])
    return summary


def prepare_autoencoder(
    backbone: Any, images: np.ndarray, opts: Any, device: torch.device, is_main: bool, clock: Any
) -> dict[str, Any]:
    """Give ``backbone`` its autoencoder, on ``device``: the one it has (a second fit, a
    loaded model), the one of a run being resumed (``output_dir/vae``), the ``autoencoder``
    option's, or a new one from :meth:`~.base.LatentDiffusionBackbone.train_autoencoder` on
    ``images`` (``opts.vae_*`` over the preset's; for its share of ``clock``, resumable from
    ``output_dir/autoencoder-checkpoint.pt``). Returns a summary. (With several processes each
    trains the same seeded autoencoder; train it once with ``htd train-vae``.)
    """
    from htd_plugins.backbones.ldm.autoencoders import calibrate, load_autoencoder

    if backbone.autoencoder is not None:
        backbone.autoencoder.frozen(device)
        return {"source": "existing", "scaling_factor": backbone.autoencoder.scaling_factor}
    out = Path(opts.output_dir) if opts.output_dir else None
    saved = out / "vae" if out is not None else None
    given = backbone.config.autoencoder
    if saved is not None and opts.resume and (saved / "config.json").is_file():
        ae, summary = load_autoencoder(saved).frozen(device), {"source": str(saved)}
        if opts.progress:
            from htd_plugins.backbones.ldm.autoencoder_training import _note

            _note(f"autoencoder: reusing the one trained before in {saved}")
    elif given:
        ae, summary = load_autoencoder(given).frozen(device), {"source": given}
        check_size(backbone, ae)  # before the images go through it
        calibrate(ae, images, backbone.config.scaling_factor)
    else:
        checkpoint = out / AUTOENCODER_CHECKPOINT if out is not None and is_main else None
        if checkpoint is not None and not opts.resume:
            checkpoint.unlink(missing_ok=True)
        summary = backbone.train_autoencoder(
            images, checkpoint=checkpoint, clock=clock.stage(opts.vae_seconds()),
            progress=opts.progress, **opts.autoencoder_options(backbone.preset.autoencoder_train).to_dict(),
        )  # fmt: skip
        ae = backbone.autoencoder.frozen(device)
    if saved is not None and is_main and not (saved / "config.json").is_file():
        ae.save(saved)
    if out is not None and is_main:
        (out / AUTOENCODER_CHECKPOINT).unlink(missing_ok=True)
    backbone.autoencoder = ae
    return {**summary, "scaling_factor": ae.scaling_factor}


def check_size(backbone: Any, ae: Any) -> None:
    """The training window must be a multiple of the autoencoder's factor times the UNet's
    downsampling (checked once the autoencoder is known: a loaded one may differ from the
    preset's, e.g. TAEF2's 8x).

    Raises:
        InputError: naming the size and the multiple.
    """
    multiple = ae.factor * backbone.preset.unet_factor
    if backbone.image_size % multiple:
        raise InputError(
            f"image_size={backbone.image_size} must be a multiple of {multiple} px with this "
            f"autoencoder ({ae.factor}x) and the {backbone.preset.name} preset's UNet "
            f"({backbone.preset.unet_factor}x): use e.g. image_size={max(multiple, backbone.image_size // multiple * multiple)}"
        )
