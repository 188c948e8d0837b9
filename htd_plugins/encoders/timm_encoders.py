"""``timm_encoders``: pathology and general foundation models built with timm.

Registers ``uni``, ``uni2_h``, ``dinov2_vits14``, ``dinov2_vitl14``, ``resnet50`` and
``vit_small``. Each loads its weights from a local file (``weights="/path"``), never from a
hub; ``weights="random"`` gives a seeded random initialisation whose numbers are labelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_plugins.encoders.bases.timm import TimmEncoder, TimmSpec, make_encoder_class

#: Normalisation of the Lunit self-supervised pathology models (Kang et al., CVPR 2023),
#: among them the Barlow Twins ResNet-50 ``bt_rn50_ep200.torch``.
LUNIT_MEAN = (0.70322989, 0.53606487, 0.66096631)
LUNIT_STD = (0.21716536, 0.26081574, 0.20723464)

SPECS: dict[str, tuple[TimmSpec, str]] = {
    "uni": (
        TimmSpec(
            "vit_large_patch16_224",
            {"init_values": 1e-5, "dynamic_img_size": True},
            weights_hint="UNI's pytorch_model.bin (Hugging Face MahmoodLab/UNI, gated)",
        ),
        "UNI pathology ViT-L/16 (1024-d; MahmoodLab/UNI weights).",
    ),
    "uni2_h": (
        TimmSpec(
            "vit_giant_patch14_224",
            {
                "patch_size": 14,
                "depth": 24,
                "num_heads": 24,
                "embed_dim": 1536,
                "init_values": 1e-5,
                "mlp_ratio": 2.66667 * 2,
                "mlp_layer": "SwiGLUPacked",
                "act_layer": "SiLU",
                "no_embed_class": True,
                "reg_tokens": 8,
                "dynamic_img_size": True,
            },  # fmt: skip
            weights_hint="UNI2-h's pytorch_model.bin (Hugging Face MahmoodLab/UNI2-h, gated)",
        ),
        "UNI2-h pathology ViT-H/14 with 8 registers (1536-d; MahmoodLab/UNI2-h weights).",
    ),
    "dinov2_vits14": (
        TimmSpec(
            "vit_small_patch14_dinov2",
            weights_hint="dinov2_vits14_pretrain.pth (facebookresearch/dinov2) or timm's "
            "vit_small_patch14_dinov2.lvd142m model.safetensors",
        ),
        "DINOv2 ViT-S/14 (384-d; original or timm checkpoints, run at 224 px).",
    ),
    "dinov2_vitl14": (
        TimmSpec(
            "vit_large_patch14_dinov2",
            weights_hint="dinov2_vitl14_pretrain.pth (facebookresearch/dinov2) or timm's "
            "vit_large_patch14_dinov2.lvd142m model.safetensors",
        ),
        "DINOv2 ViT-L/14 (1024-d; original or timm checkpoints, run at 224 px).",
    ),
    "vit_small": (
        TimmSpec(
            "vit_small_patch16_224",
            weights_hint="timm's vit_small_patch16_224 model.safetensors",
        ),
        "ViT-S/16 (384-d; timm/torchvision-style checkpoints); the distilled-classifier size.",
    ),
}

ENCODERS: dict[str, type[TimmEncoder]] = {
    name: make_encoder_class(name, spec, doc, __name__) for name, (spec, doc) in SPECS.items()
}


class Resnet50Encoder(TimmEncoder):
    """ResNet-50 trunk (2048-d); loads timm/torchvision and Barlow Twins pathology checkpoints.

    The Lunit Barlow Twins checkpoint (``bt_rn50_ep200.torch``) is a torchvision ResNet-50
    trunk state dict without ``fc``; Facebook's ``resnet50.pth`` and training checkpoints
    (``{"state_dict": {"module.backbone.conv1.weight": ...}}``) load too: wrappers, prefixes and
    projector heads are stripped. Use ``stats="lunit"`` with the Lunit checkpoints.

    Args:
        stats: ``imagenet`` or ``lunit`` normalisation (``mean`` / ``std`` override both).
    """

    spec = TimmSpec(
        "resnet50",
        weights_hint="a ResNet-50 state dict (e.g. Lunit's bt_rn50_ep200.torch, or timm's "
        "resnet50 model.safetensors)",
    )
    name = "resnet50"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        stats: str = "imagenet",
        input_size: int | None = None,
        mean: tuple[float, float, float] | list[float] | None = None,
        std: tuple[float, float, float] | list[float] | None = None,
        channels_last: bool = False,
        bf16: bool = False,
        arch_overrides: dict[str, Any] | None = None,
    ) -> None:
        if stats not in ("imagenet", "lunit"):
            raise InputError(f"encoder 'resnet50': stats={stats!r} is not 'imagenet' or 'lunit'")
        if stats == "lunit":
            mean, std = mean or LUNIT_MEAN, std or LUNIT_STD
        super().__init__(
            weights, device, input_size, mean, std, channels_last, bf16, arch_overrides
        )


@hookimpl
def htd_register_encoders(registry) -> None:
    for name, cls in ENCODERS.items():
        registry.register(name, cls)
    registry.register("resnet50", Resnet50Encoder)
