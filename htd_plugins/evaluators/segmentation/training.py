"""Train one DeepLabv3+ model (helpers of the ``deeplabv3plus`` evaluator).

segmentation-models-pytorch's ``DeepLabV3Plus`` with a timm encoder (``tu-*`` names, random
init: nothing is downloaded), trained with cross-entropy plus segmentation-models-pytorch's
multiclass Dice loss, both taking the ignore index natively (ignored pixels count for nothing:
the loss of a batch does not change when ignored pixels are added). Its scores (one confusion
matrix over all test pixels, MONAI's confusion-matrix metric) are in :mod:`.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from htd_core.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Budget:
    """How long and how large one training run is (identical across the compared settings).

    Raises:
        InputError: a value out of range (names it); the encoder is checked where the
            evaluator is built (:func:`check_encoder` imports segmentation-models-pytorch).
    """

    steps: int
    input_size: int
    batch_size: int
    lr: float = 1e-3
    encoder: str = "tu-resnet18"

    def __post_init__(self) -> None:
        from htd_core.options import check_int, check_number

        check_int(self.steps, "deeplabv3plus: steps", 1)
        check_int(self.input_size, "deeplabv3plus: input_size", 32)
        check_int(self.batch_size, "deeplabv3plus: batch_size", 2)
        check_number(self.lr, "deeplabv3plus: lr", 0.0, above=True)
        if self.input_size % 16:  # DeepLabv3+'s output stride: smp refuses it later
            size = self.input_size
            raise InputError(
                f"deeplabv3plus: input_size={size} must be a multiple of 16 (the network's "
                f"output stride), e.g. {size - size % 16 or 16} or {size + 16 - size % 16}"
            )


#: Presets: ``tiny`` for tests (seconds), ``small`` for CPU runs (minutes), ``paper`` for GPU.
BUDGETS = {
    "tiny": Budget(steps=2, input_size=32, batch_size=2, encoder="tu-test_resnet"),
    "small": Budget(steps=300, input_size=128, batch_size=8, encoder="tu-resnet18"),
    "paper": Budget(steps=20000, input_size=256, batch_size=16, lr=5e-4, encoder="tu-resnet50"),
}


def check_encoder(name: str) -> None:
    """Refuse an encoder that segmentation-models-pytorch (or timm, for ``tu-``) does not have,
    before any set is read."""
    import segmentation_models_pytorch as smp

    if name.startswith("tu-"):
        import timm

        known = timm.list_models(name[3:])
    else:
        known = [n for n in smp.encoders.get_encoder_names() if n == name]
    if not known:
        raise InputError(
            f"deeplabv3plus: encoder={name!r} is not a segmentation-models-pytorch encoder "
            "(or a timm model written tu-<name>), e.g. tu-resnet18"
        )


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Shorter side to ``size`` (image bilinear, mask nearest), then a centred square crop."""
    from PIL import Image

    h, w = mask.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((nw, nh), Image.NEAREST))
    y, x = (nh - size) // 2, (nw - size) // 2
    return (
        np.ascontiguousarray(image[y : y + size, x : x + size]),
        np.ascontiguousarray(mask[y : y + size, x : x + size]).astype(np.uint8),
    )


def _to_tensors(
    images: np.ndarray, masks: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    x = (
        torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
        / 255.0
    )
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    y = torch.from_numpy(np.ascontiguousarray(masks)).to(device).long()
    return (x - mean) / std, y


def _augment(
    images: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random 90-degree rotations and flips, applied jointly to image and mask."""
    out_i, out_m = [], []
    for img, m in zip(images, masks, strict=True):
        k = int(rng.integers(4))
        img, m = np.rot90(img, k), np.rot90(m, k)
        if rng.random() < 0.5:
            img, m = img[:, ::-1], m[:, ::-1]
        out_i.append(img)
        out_m.append(m)
    return np.stack(out_i), np.stack(out_m)


def segmentation_loss(ignore_index: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy plus multiclass Dice (segmentation-models-pytorch), both blind to
    ``ignore_index``: ``loss(logits N x K x H x W, labels N x H x W int64)`` -> scalar.

    Pixels labelled ``ignore_index`` add nothing to either term (labels ``[0, 0, 1, 1]`` plus
    four ignored pixels give exactly the loss of ``[0, 0, 1, 1]`` alone).
    """
    # Not MONAI's losses: DiceCELoss takes no ignore index (its cross-entropy fails on label
    # 255), and DiceLoss(ignore_index=...) ignores correctly but is another objective: a class
    # absent from the batch still costs up to 1 (smp leaves it out), per image by default.
    import segmentation_models_pytorch as smp

    ce = torch.nn.CrossEntropyLoss(ignore_index=ignore_index)
    dice = smp.losses.DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return ce(logits, labels) + dice(logits, labels)

    return loss


def train_model(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int,
    budget: Budget,
    seed: int,
    device: str = "cpu",
    augment: bool = True,
) -> tuple[torch.nn.Module, float]:
    """Train a fresh DeepLabv3+ on uint8 images N x S x S x 3 and masks N x S x S.

    Batches are drawn with replacement by a generator seeded with ``seed``, so every setting
    sees the same number of samples. Returns (model in eval mode, mean loss of the last steps).
    """
    import segmentation_models_pytorch as smp

    dev = torch.device(device)
    torch.manual_seed(seed)
    model = smp.DeepLabV3Plus(
        encoder_name=budget.encoder, encoder_weights=None, classes=num_classes
    ).to(dev)
    optimiser = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=budget.lr, total_steps=max(budget.steps, 1), pct_start=0.1
    )
    criterion = segmentation_loss(ignore_index)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    model.train()
    for _ in range(budget.steps):
        idx = rng.integers(0, len(images), size=max(budget.batch_size, 2))
        bi, bm = images[idx], masks[idx]
        if augment:
            bi, bm = _augment(bi, bm, rng)
        x, y = _to_tensors(bi, bm, dev)
        loss = criterion(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DeepLabv3+ loss became {float(loss)}; lower lr={budget.lr}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return model, float(np.mean(tail)) if tail else float("nan")


@torch.inference_mode()
def predict(
    model: torch.nn.Module, images: np.ndarray, batch_size: int = 16, device: str = "cpu"
) -> torch.Tensor:
    """Arg-max class maps N x S x S of uint8 images."""
    dev = torch.device(device)
    out = []
    for start in range(0, len(images), batch_size):
        x, _ = _to_tensors(images[start : start + batch_size], np.zeros((0,), np.uint8), dev)
        out.append(model(x).argmax(1).cpu())
    return torch.cat(out)


def chance_predictions(labels: torch.Tensor, frequencies: np.ndarray, seed: int) -> torch.Tensor:
    """Random class maps drawn per pixel from ``frequencies`` (the chance reference)."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(len(frequencies), size=tuple(labels.shape), p=frequencies)
    return torch.from_numpy(draws)
