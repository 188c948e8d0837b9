"""The constructor options of the latent diffusion backbones, declared once.

``controlnet_ldm`` and ``concat_ldm`` take :class:`LatentDiffusionOptions` (``controlnet_ldm``
adds ``zero_init``); the registries read the option names from the dataclass
(:mod:`htd_core.options`). They say what a model *is*; how one call samples from it
(guidance, scheduler, steps, batch size, seed) are :class:`htd_core.GenerationOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from htd_core.errors import InputError
from htd_core.options import check_int, check_number

#: Former options and where they went (an old YAML gets this instead of "unknown option").
MOVED = {
    **dict.fromkeys(
        ("guidance_scale", "scheduler", "num_inference_steps", "batch_size"),
        "it is a generation option now, given per call: Pipeline.generate(..., guidance_scale=3), "
        "`htd generate --guidance 3`, or a pipeline YAML's `generate:` section",
    ),
    "vae": "it is called `autoencoder` now (a folder written by `htd train-vae`)",
}
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class LatentDiffusionOptions:
    """What a latent diffusion backbone is.

    Attributes:
        preset: model size, ``tiny`` | ``small`` | ``paper`` (:mod:`.presets`).
        autoencoder: local folder of a saved autoencoder (``htd train-vae``'s output, a
            diffusers ``AutoencoderKL`` folder or a pipeline folder with ``vae/``); None trains
            one on the training patches at the start of ``fit``.
        image_size: training window side in px (default: the preset's); larger samples are
            randomly cropped to it.
        prediction_type: ``epsilon`` or ``v_prediction``.
        condition_dropout: probability of training a sample with the null condition, the
            null branch of classifier-free guidance (0: guidance is impossible).
        scaling_factor: latent scale; None measures 1 / std of the training latents.
        device: ``auto`` (a GPU when present), ``cpu``, ``cuda``...
        class_embedding_dim: channels of the learned class embedding that replaces a
            condition's class-index channel (``crop_slots``; unused without one).

    Raises:
        InputError: an unknown preset, an image size that is not a multiple of the preset's
            ``size_multiple``, or a value out of range (names the option).
    """

    preset: str = "small"
    autoencoder: str | None = None
    image_size: int | None = None
    prediction_type: str = "epsilon"
    condition_dropout: float = 0.1
    scaling_factor: float | None = None
    device: str = "auto"
    class_embedding_dim: int = 16

    def __post_init__(self) -> None:
        from htd_plugins.backbones.ldm.presets import get_preset

        preset = get_preset(self.preset)
        size = self.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InputError(f"image_size={size!r} must be a positive integer (px) or null")
        if (size or preset.image_size) % preset.size_multiple:
            raise InputError(
                f"image_size={size} must be a multiple of {preset.size_multiple} (the "
                f"{preset.name} preset's autoencoder and UNet downsampling)"
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise InputError(
                f"prediction_type={self.prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)}"
            )
        dropout = check_number(self.condition_dropout, "condition_dropout", 0.0)
        if dropout >= 1:
            raise InputError(f"condition_dropout={dropout} must be in [0, 1)")
        check_int(self.class_embedding_dim, "class_embedding_dim", 1)
        if self.scaling_factor is not None:
            check_number(self.scaling_factor, "scaling_factor", 0.0, above=True)
        if self.autoencoder is not None:
            object.__setattr__(self, "autoencoder", str(self.autoencoder))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what a model folder records)."""
        from dataclasses import asdict

        return asdict(self)
