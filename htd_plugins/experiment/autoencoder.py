"""The experiment's ``autoencoder`` stage: one autoencoder shared by every arm and seed.

Trained once on the training patches with the first seed (``LatentBackbone.train_autoencoder``
of the first arm's backbone; resumable), or, when the experiment's ``model:`` names an
``autoencoder`` folder (e.g. TAEF2's weights), that pretrained one, calibrated on the training
patches, frozen or with its decoder fine-tuned (the budget's ``vae_finetune_steps``). Either is saved to ``OUT/autoencoder`` and scored on the held-out patches (mean L1).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from htd_plugins.experiment.arms import latent_arm
from htd_plugins.experiment.stages import own_folder, stage_key


def shared_autoencoder(run: Any) -> dict[str, Any]:
    """Stage ``autoencoder``: trained once on the training patches, shared by every arm
    (``LatentBackbone.train_autoencoder`` of the first arm's backbone; resumable)."""
    import numpy as np

    b, seed = run.budget, run.config.seed
    if run.config.model.get("autoencoder"):
        return pretrained_autoencoder(run, str(run.config.model["autoencoder"]))
    adversarial = (
        [b.vae_adversarial_weight, b.vae_adversarial_start] if b.vae_adversarial_weight else []
    )
    perceptual = [f"perceptual={b.vae_perceptual_weight}"] if b.vae_perceptual_weight else []
    key = stage_key("autoencoder", run.data_key, b.preset, run.image_size, b.vae_steps, seed,
                    *adversarial, *perceptual)  # fmt: skip
    folder = run.out / "autoencoder"
    done = run.stages.get("autoencoder", key)
    if done is not None and (folder / "config.json").is_file():
        return done
    backbone, work = _training_backbone(run, key)
    images = np.stack([s.image for s in run.data.train])
    run.log(f"autoencoder: {b.vae_steps} steps on {len(images)} training patches")
    summary = backbone.train_autoencoder(
        images, checkpoint=work / "checkpoint.pt", steps=b.vae_steps, seed=seed,
        checkpoint_every=max(1, b.checkpoint_every), adversarial_weight=b.vae_adversarial_weight,
        adversarial_start=b.vae_adversarial_start, perceptual_weight=b.vae_perceptual_weight,
        progress=run.config.fit.get("progress", True),
    )  # fmt: skip
    summary["reconstruction_mae_test"] = _held_out_l1(run, backbone.autoencoder, folder)
    summary["steps_per_second"] = round(summary["steps"] / max(summary["seconds"], 1e-9), 3)
    run.log(f"autoencoder: mean L1 on held-out patches {summary['reconstruction_mae_test']}/255")
    return run.stages.put("autoencoder", key, {**summary, "path": str(folder), "key": key})


def _training_backbone(run: Any, key: str) -> tuple[Any, Path]:
    """The first latent arm's backbone (it trains the shared autoencoder) and its work folder
    ``OUT/work/autoencoder`` (owned by stage ``key``).

    Raises:
        ConfigError: that arm's backbone has no autoencoder.
    """
    from htd_core.interfaces import LatentBackbone
    from htd_core.plugins import create

    work = run.out / "work" / "autoencoder"
    own_folder(work, key)
    work.mkdir(parents=True, exist_ok=True)
    arm = latent_arm(run.config.arms, str(run.config.source))
    backbone = create("backbones", arm.backbone, preset=run.budget.preset,
                      image_size=run.image_size, **{**run.config.model, **arm.options})  # fmt: skip
    if not isinstance(backbone, LatentBackbone):
        from htd_core.errors import ConfigError

        raise ConfigError(f"{run.config.source}: arm {arm.name!r}: backbone "
                          f"{arm.backbone!r} has no autoencoder to share")  # fmt: skip
    return backbone, work


def _held_out_l1(run: Any, ae: Any, folder: Path) -> float:
    """Save ``ae`` to ``folder``; its mean L1 (0-255) on the held-out patches, 3 decimals."""
    import numpy as np

    test = np.stack([s.image for s in run.data.test])
    error = np.abs(ae.reconstruct(test).astype(np.float64) - test).mean()
    ae.save(folder)
    return round(float(error), 3)


def pretrained_autoencoder(run: Any, source: str) -> dict[str, Any]:
    """Stage ``autoencoder`` with ``model: {autoencoder: FOLDER}``: a pretrained one (e.g.
    TAEF2), calibrated on the training patches (latent statistics) and used frozen, or with
    its decoder fine-tuned for the budget's ``vae_finetune_steps`` (resumable); scored on the
    held-out patches and saved to ``OUT/autoencoder`` like a trained one."""
    import numpy as np

    from htd_plugins.backbones import calibrate, folder_digest, load_autoencoder

    b, seed = run.budget, run.config.seed
    steps = b.vae_finetune_steps
    perceptual = [f"perceptual={b.vae_perceptual_weight}"] if b.vae_perceptual_weight else []
    key = stage_key("autoencoder", run.data_key, "pretrained", folder_digest(source),
                    *([steps, seed, *perceptual] if steps else []))  # fmt: skip
    folder = run.out / "autoencoder"
    done = run.stages.get("autoencoder", key)
    if done is not None and (folder / "config.json").is_file():
        return done
    start = time.perf_counter()
    images = np.stack([s.image for s in run.data.train])
    summary: dict[str, Any] = {"source": "pretrained", "steps": 0}
    if steps:
        backbone, work = _training_backbone(run, key)
        run.log(f"autoencoder: fine-tuning the decoder of {source} for {steps} steps")
        summary.update(backbone.train_autoencoder(
            images, checkpoint=work / "checkpoint.pt", steps=steps, seed=seed,
            checkpoint_every=max(1, b.checkpoint_every), perceptual_weight=b.vae_perceptual_weight,
            progress=run.config.fit.get("progress", True),
        ))  # fmt: skip
        summary["source"] = "pretrained, decoder fine-tuned"
        ae = backbone.autoencoder
    else:
        ae = load_autoencoder(source).frozen("cpu")
        calibrate(ae, images)
    error = _held_out_l1(run, ae, folder)
    summary.update(seconds=round(time.perf_counter() - start, 1), scaling_factor=ae.scaling_factor,
                   factor=ae.factor, reconstruction_mae_test=error)  # fmt: skip
    run.log(f"autoencoder: {summary['source']} ({type(ae).__name__}, {ae.factor}x), mean L1 on "
            f"held-out patches {summary['reconstruction_mae_test']}/255")  # fmt: skip
    return run.stages.put("autoencoder", key, {**summary, "path": str(folder), "key": key})


def check_pretrained(config: Any) -> None:
    """A ``model: {autoencoder: FOLDER}`` must name a folder htd reads, checked before any
    data is read.

    Raises:
        ConfigError: naming the file, the folder and what it must hold.
    """
    from htd_core.errors import ConfigError
    from htd_plugins.backbones import autoencoder_kind

    source = config.model.get("autoencoder")
    if source and autoencoder_kind(Path(str(source)).expanduser()) is None:
        raise ConfigError(
            f"{config.source}: model.autoencoder={str(source)!r} holds no autoencoder htd reads: "
            "give TAEF2's weights folder (taef2_encoder.pth, taef2_decoder.pth) or a folder "
            "written by `htd train-vae`"
        )
