"""Named budgets of ``htd experiment``: steps, not wall time, so runs compare across machines.

A budget fixes every count that decides the numbers: the model preset and patch side, the
autoencoder's steps (trained once, shared by every arm), the diffusion steps of each arm (the
same for all), how many real patches train and test, how many synthetic patches each arm
generates, the generation options (sampler, steps, guidance), and the options of evaluators
whose cost grows with the budget (the DeepLabv3+ training budget, the privacy audit's subset). Wall time follows from the machine;
``results.md`` reports the measured steps/s beside it.

The wall times in the comments were measured on 2 shared CPU cores (see docs/results.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from htd_core.options import check_int, check_number, preset


@dataclass(frozen=True)
class Budget:
    """What an experiment may spend.

    Attributes:
        name: the preset's name.
        preset: the backbones' model preset (``tiny``, ``small``, ``paper``).
        image_size: model patch side in px; real patches are cut at the data's ``patch_size``
            and downscaled to it (area filter), never upsampled (refused). None: the data's
            ``patch_size``, native resolution (the ``gpu`` budget).
        vae_steps: optimizer steps of the shared autoencoder.
        steps: optimizer steps of each arm's denoiser.
        batch_size: denoiser batch (None: the preset's).
        max_train: real training patches used at most (a seeded subset of the train split).
        n_test: held-out real patches at most (FD reference and segmentation test set).
        n_synthetic: synthetic patches each arm generates (from train layouts, cycled when
            more are asked; None: as many as the real training patches, so DeepLabv3+ trains
            on sets of the same size). Raising it on a finished run grows its sets.
        num_inference_steps: sampler steps.
        guidance_scale: classifier-free guidance of the conditioned arms (a null condition is
            never guided: the unconditional arm samples with 1, and records it).
        scheduler: the sampler (``ddim``, ``dpmsolver++``).
        checkpoint_every: denoiser checkpoint interval (steps): what a killed run loses at most.
        vae_adversarial_weight: weight of the autoencoder's PatchGAN term (0: off; see
            :mod:`htd_plugins.backbones.ldm.discriminator`).
        vae_adversarial_start: autoencoder step at which that term starts.
        vae_perceptual_weight: weight of the autoencoder's perceptual term (0: off; see
            :mod:`htd_plugins.backbones.ldm.perceptual`).
        vae_finetune_steps: with a pretrained autoencoder (the experiment's
            ``model: {autoencoder: FOLDER}``, e.g. TAEF2), steps of fine-tuning its decoder on
            the training patches (0: used frozen). ``vae_steps`` then does not apply.
        evaluators: evaluator name -> its options at this budget (over the experiment's
            defaults, under the file's own), e.g. the ``deeplabv3plus`` training budget.
        subsets: evaluator name -> the most synthetic patches of each arm it scores (a seeded
            subset; absent: all). The privacy audit embeds 10 views of each (image, masked
            image, crop windows), so on a CPU it costs more than generating the set.
    """

    name: str
    preset: str
    image_size: int | None
    vae_steps: int
    steps: int
    max_train: int
    n_test: int
    n_synthetic: int | None = None
    batch_size: int | None = None
    num_inference_steps: int = 25
    guidance_scale: float = 2.0
    scheduler: str = "ddim"
    checkpoint_every: int = 250
    vae_adversarial_weight: float = 0.0
    vae_adversarial_start: int = 0
    vae_perceptual_weight: float = 0.0
    vae_finetune_steps: int = 0
    evaluators: dict[str, dict[str, Any]] = field(default_factory=dict)
    subsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vae_steps", "steps", "max_train", "n_test", "num_inference_steps",
                     "checkpoint_every"):  # fmt: skip
            check_int(getattr(self, name), f"budget {name}", 1)
        for name in ("image_size", "n_synthetic", "batch_size"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), f"budget {name}", 1)
        check_number(self.guidance_scale, "budget guidance_scale", 0.0)
        check_number(self.vae_adversarial_weight, "budget vae_adversarial_weight", 0.0)
        check_number(self.vae_perceptual_weight, "budget vae_perceptual_weight", 0.0)
        check_int(self.vae_adversarial_start, "budget vae_adversarial_start", 0)
        check_int(self.vae_finetune_steps, "budget vae_finetune_steps", 0)
        for name, cap in self.subsets.items():
            check_int(cap, f"budget subsets.{name}", 1)

    def generation(self, seed: int) -> dict[str, Any]:
        """The generation options every arm samples with (resolved by its pipeline)."""
        return {"guidance_scale": self.guidance_scale, "scheduler": self.scheduler,
                "num_inference_steps": self.num_inference_steps, "seed": seed}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _segmentation(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One DeepLabv3+ budget for ``deeplabv3plus`` and ``layout_adherence``: their real-data
    network is then the same, trained once (its cache key is its options)."""
    return {"deeplabv3plus": dict(options), "layout_adherence": dict(options)}


#: The presets. ``tiny`` is for tests (seconds); ``demo`` is what ``make demo`` runs;
#: ``cpu-quick`` and ``cpu`` run four arms at two seeds (the example files) on 2 CPU cores,
#: ``cpu`` sized for 2 hours per dataset on a fast enough machine (GlaS 1 h 50 min; WSSS4LUAD
#: about 2 h on the fastest measured, 2 h 45 min on a 1.3x slower one, docs/results.md): the
#: same data, autoencoder and evaluation as ``cpu-quick`` (so its stages are shared), 1.5x its
#: denoiser steps. Evaluation is about half
#: of either (FD under two encoders, layout adherence, DeepLabv3+ twice per arm and seed), so
#: the former ``cpu`` (2000 steps on 1500 patches, DeepLabv3+ 1200 steps: 0.76 / 0.52 held-out
#: real mIoU against 0.64 / 0.49 at 150; benchmarks/segmentation_curve.py, docs/evaluation.md)
#: did not fit: its stronger evaluator is ``budget_options`` away. The denoiser recipe is the
#: ``small`` model preset's (Min-SNR-5 since the ablation in docs/results.md);
#: ``gpu`` the paper-sized model at the data's native patch size (GlaS 160 px of its 224 px
#: tiles, WSSS4LUAD 128 px: multiples of the paper preset's 32) for a lent GPU.
BUDGETS: dict[str, Budget] = {
    "tiny": Budget(
        "tiny", preset="tiny", image_size=32, vae_steps=6, steps=6, max_train=12, n_test=8,
        n_synthetic=8, batch_size=4, num_inference_steps=2, checkpoint_every=3,
        evaluators=_segmentation({"budget": "tiny"}),
    ),
    "demo": Budget(
        "demo", preset="small", image_size=64, vae_steps=1000, steps=700, max_train=600,
        n_test=64, n_synthetic=64,
        evaluators=_segmentation({"budget": "small", "steps": 60, "input_size": 64}),
    ),
    "cpu-quick": Budget(
        "cpu-quick", preset="small", image_size=64, vae_steps=1500, steps=800, max_train=600,
        n_test=96, subsets={"privacy": 200},
        evaluators=_segmentation({"budget": "small", "steps": 150, "input_size": 64}),
    ),
    "cpu": Budget(
        "cpu", preset="small", image_size=64, vae_steps=1500, steps=1200, max_train=600,
        n_test=96, subsets={"privacy": 200},
        evaluators=_segmentation({"budget": "small", "steps": 150, "input_size": 64}),
    ),
    "gpu": Budget(
        "gpu", preset="paper", image_size=None, vae_steps=20000, steps=50000, max_train=20000,
        n_test=1000, num_inference_steps=50, checkpoint_every=2000,
        evaluators=_segmentation({"budget": "paper"}),
    ),
}  # fmt: skip


def get_budget(name: str, **overrides: Any) -> Budget:
    """The budget preset ``name``, with fields replaced by ``overrides`` (the one preset
    helper, :func:`htd_core.options.preset`).

    Raises:
        InputError: an unknown preset or field (the closest name and the list), or a value out
            of range.
    """
    return preset(BUDGETS, name, overrides, "budget")
