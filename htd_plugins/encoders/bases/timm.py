"""TimmEncoder: any timm architecture as an htd Encoder, weights from a local file.

A :class:`TimmSpec` says which timm model to build and how its inputs are prepared; a
subclass of :class:`TimmEncoder` with a ``spec`` is one registered encoder. The external
``htd-timm-encoder`` plugin builds such subclasses from a TOML file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from htd_core.errors import InputError
from htd_core.interfaces import Encoder
from htd_plugins.encoders.bases.weights import (
    check_weights_file,
    file_digest,
    fit_state_dict,
    read_state_dict,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: timm layer classes that specs may name as strings (resolved lazily, timm is heavy).
_LAYERS = {"SwiGLUPacked": "timm.layers", "SiLU": "torch.nn", "GELU": "torch.nn"}


@dataclass(frozen=True)
class TimmSpec:
    """How to build one encoder with timm.

    Attributes:
        arch: timm model name (``vit_large_patch16_224``).
        model_kwargs: extra ``timm.create_model`` arguments; layer classes as strings
            (``"SwiGLUPacked"``, ``"SiLU"``).
        input_size: side of the square input the model expects.
        mean, std: normalisation of [0, 1] RGB.
        weights_hint: where users get the weights (shown when none are given).
        default_weights: local weights file used when the encoder is created without
            ``weights`` (e.g. the path a plugin's config names); None: weights are required.
    """

    arch: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_hint: str = "the model's released checkpoint"
    default_weights: str | None = None

    @property
    def is_vit(self) -> bool:
        return self.arch.startswith(("vit_", "deit", "eva"))


class TimmEncoder(Encoder):
    """A timm backbone (no classifier head) with declared preprocessing.

    Args:
        weights: local ``.safetensors`` or PyTorch checkpoint file of this architecture, or
            ``"random"`` for a seeded random initialisation (shape tests; reported numbers are
            labelled RANDOM WEIGHTS). Default: the spec's ``default_weights``; required when
            that is None (no download is ever made).
        device: ``cpu``, ``cuda``, ``cuda:1``...
        input_size: override the input side (ViT position embeddings are resized to it).
        mean, std: override the normalisation (e.g. pathology statistics).
        channels_last: use the channels-last memory format (faster convolutions on GPU).
        bf16: run in bfloat16 autocast on CUDA (ignored on CPU).
        arch_overrides: extra ``timm.create_model`` arguments (``{"depth": 2}``: tiny test
            variants); the weights must match the resulting architecture.
    """

    spec: ClassVar[TimmSpec]
    name: str = "timm"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        input_size: int | None = None,
        mean: tuple[float, float, float] | list[float] | None = None,
        std: tuple[float, float, float] | list[float] | None = None,
        channels_last: bool = False,
        bf16: bool = False,
        arch_overrides: dict[str, Any] | None = None,
    ) -> None:
        spec = self.spec
        weights = spec.default_weights if weights is None else weights
        if weights is None:
            raise InputError(
                f"encoder {self.name!r} needs weights: pass weights='/path/to/file' (local "
                f".safetensors or PyTorch checkpoint; get {spec.weights_hint} on a machine with "
                "access), or weights='random' explicitly for a random initialisation whose "
                "numbers are labelled RANDOM WEIGHTS"
            )
        if input_size is not None and not (isinstance(input_size, int) and input_size > 0):
            raise InputError(f"encoder {self.name!r}: input_size={input_size!r} must be an int > 0")
        self.input_size = input_size or spec.input_size
        self.mean = _triple(mean, spec.mean, "mean", self.name)
        self.std = _triple(std, spec.std, "std", self.name)
        self.channels_last, self.bf16 = bool(channels_last), bool(bf16)
        random = str(weights) == "random"
        path = None if random else check_weights_file(weights, self.name)
        self.model = self._create(dict(arch_overrides or {}))
        patch = getattr(getattr(self.model, "patch_embed", None), "patch_size", (1, 1))
        if self.input_size % patch[0]:
            raise InputError(
                f"encoder {self.name!r}: input_size={self.input_size} is not a multiple of its "
                f"patch size {patch[0]}"
            )
        if path is not None:
            self._load(path)
        self.weights_id = "random" if path is None else file_digest(path)
        self.weights_path = None if path is None else str(path)
        self.embed_dim = int(self.model.num_features)
        self.model.eval().requires_grad_(False)
        self.to(device)

    def _create(self, overrides: dict[str, Any]) -> torch.nn.Module:
        import timm

        kwargs = {k: _resolve(v) for k, v in {**self.spec.model_kwargs, **overrides}.items()}
        if self.spec.is_vit:
            kwargs.setdefault("img_size", self.input_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # "random" weights are the same in every process
            try:
                return timm.create_model(self.spec.arch, pretrained=False, num_classes=0, **kwargs)
            except (TypeError, RuntimeError) as exc:
                raise InputError(
                    f"encoder {self.name!r}: timm cannot build {self.spec.arch} with {kwargs}: {exc}"
                ) from exc

    def _load(self, path: Path) -> None:
        filter_fn = None
        if self.spec.is_vit:
            from timm.models.vision_transformer import checkpoint_filter_fn as filter_fn
        state = fit_state_dict(
            read_state_dict(path, self.name), self.model, self.name, str(path), filter_fn
        )
        self.model.load_state_dict(state, strict=True)

    def to(self, device: str | torch.device) -> TimmEncoder:
        super().to(device)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(device=self.device, memory_format=fmt)
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        use_bf16 = self.bf16 and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            return self.model(pixels).float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.arch}, weights={self.weights_id})"


def _triple(value: Any, default: tuple[float, ...], what: str, name: str) -> tuple[float, ...]:
    if value is None:
        return tuple(default)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or (what == "std" and min(out) <= 0):
        raise InputError(f"encoder {name!r}: {what}={value!r} must be three numbers (R, G, B)")
    return out


def _resolve(value: Any) -> Any:
    """Layer class named by string in a spec -> the class (imported on demand)."""
    if isinstance(value, str) and value in _LAYERS:
        import importlib

        return getattr(importlib.import_module(_LAYERS[value]), value)
    return value


def make_encoder_class(
    name: str, spec: TimmSpec, doc: str, module: str = __name__
) -> type[TimmEncoder]:
    """A registrable TimmEncoder subclass for ``spec`` (its docstring is the summary)."""
    cls_name = "".join(p.capitalize() for p in name.replace("-", "_").split("_")) + "Encoder"
    attrs = {"spec": spec, "name": name, "__doc__": doc, "__module__": module}
    return type(cls_name, (TimmEncoder,), attrs)
