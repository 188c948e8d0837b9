"""Named budgets of ``htd experiment``: steps, not wall time, so runs compare across machines.

A budget fixes every count that decides the numbers: the model preset and patch side, the
autoencoder's steps (trained once, shared by every arm), the diffusion steps of each arm (the
same for all), how many real patches train and test, how many synthetic patches each arm
generates, the sampler, and the DeepLabv3+ training budget. Wall time follows from the machine;
``results.md`` reports the measured steps/s beside it.

The wall times in the comments were measured on 2 shared CPU cores (see docs/results.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from htd_core.errors import InputError


@dataclass(frozen=True)
class Budget:
    """What an experiment may spend.

    Attributes:
        name: the preset's name.
        preset: the backbones' model preset (``tiny``, ``small``, ``paper``).
        image_size: model patch side in px; real patches are resized to it (area filter).
        vae_steps: optimizer steps of the shared autoencoder.
        steps: optimizer steps of each arm's denoiser.
        batch_size: denoiser batch (None: the preset's).
        max_train: real training patches used at most (a seeded subset of the train split).
        n_test: held-out real patches at most (FD reference and segmentation test set).
        n_synthetic: synthetic patches each arm generates (from train layouts; None: as many
            as the real training patches, so DeepLabv3+ trains on sets of the same size).
        num_inference_steps: sampler steps (DDIM).
        guidance_scale: classifier-free guidance of the conditioned arms (the unconditional
            arm has no condition to guide by and samples with 1).
        checkpoint_every: denoiser checkpoint interval (steps): what a killed run loses at most.
        vae_adversarial_weight: weight of the autoencoder's PatchGAN term (0: off; see
            :mod:`htd_plugins.backbones.ldm.discriminator`).
        vae_adversarial_start: autoencoder step at which that term starts.
        n_privacy: synthetic patches of each arm the privacy audit checks at most (a seeded
            subset; None: all). The audit embeds 10 views of each (image, masked image, crop
            windows), so on a CPU it costs more than generating the set.
        segmentation: options of the ``deeplabv3plus`` evaluator (its own ``budget`` preset
            and overrides).
    """

    name: str
    preset: str
    image_size: int
    vae_steps: int
    steps: int
    max_train: int
    n_test: int
    n_synthetic: int | None = None
    batch_size: int | None = None
    num_inference_steps: int = 25
    guidance_scale: float = 2.0
    checkpoint_every: int = 250
    vae_adversarial_weight: float = 0.0
    vae_adversarial_start: int = 0
    n_privacy: int | None = None
    segmentation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


#: The presets. ``tiny`` is for tests (seconds); ``demo`` is what ``make demo`` runs;
#: ``cpu-quick`` about 30 minutes (measured 43) and ``cpu`` about 1.5 hours for three arms on
#: 2 CPU cores (``cpu`` had 4000 steps per arm, projected at 2.2 h per dataset: two datasets
#: did not fit one working session);
#: ``gpu`` the paper-sized model at 256 px for a lent GPU.
BUDGETS: dict[str, Budget] = {
    "tiny": Budget(
        "tiny", preset="tiny", image_size=32, vae_steps=6, steps=6, max_train=12, n_test=8,
        n_synthetic=8, batch_size=4, num_inference_steps=2, checkpoint_every=3,
        segmentation={"budget": "tiny"},
    ),
    "demo": Budget(
        "demo", preset="small", image_size=64, vae_steps=1000, steps=700, max_train=600,
        n_test=64, n_synthetic=64, segmentation={"budget": "small", "steps": 60, "input_size": 64},
    ),
    "cpu-quick": Budget(
        "cpu-quick", preset="small", image_size=64, vae_steps=1500, steps=800, max_train=600,
        n_test=96,
        segmentation={"budget": "small", "steps": 150, "input_size": 64},
    ),
    "cpu": Budget(
        "cpu", preset="small", image_size=64, vae_steps=5000, steps=2000, max_train=1500,
        n_test=200, checkpoint_every=500, n_privacy=500,
        segmentation={"budget": "small", "steps": 400, "input_size": 64},
    ),
    "gpu": Budget(
        "gpu", preset="paper", image_size=256, vae_steps=20000, steps=50000, max_train=20000,
        n_test=1000, num_inference_steps=50, checkpoint_every=2000,
        segmentation={"budget": "paper"},
    ),
}  # fmt: skip


def get_budget(name: str, **overrides: Any) -> Budget:
    """The budget preset ``name``, with fields replaced by ``overrides``.

    Raises:
        InputError: an unknown preset (listing them) or an unknown field.
    """
    from htd_core.registry import suggest

    if name not in BUDGETS:
        raise InputError(
            f"budget {name!r} does not exist.{suggest(name, list(BUDGETS))} "
            f"Budgets: {', '.join(BUDGETS)}"
        )
    base = BUDGETS[name]
    known = set(asdict(base)) - {"name"}
    bad = sorted(set(overrides) - known)
    if bad:
        raise InputError(
            f"budget option(s) {bad} unknown.{suggest(bad[0], sorted(known))} Options: "
            f"{', '.join(sorted(known))}"
        )
    return replace(base, **overrides) if overrides else base
