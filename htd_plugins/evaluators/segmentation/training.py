"""Train one DeepLabv3+ model (helpers of the segmentation evaluators).

The network (segmentation-models-pytorch's ``DeepLabV3Plus``, output stride 8, ImageNet
encoder weights installed offline) is built in :mod:`.network`. It is trained with
cross-entropy plus segmentation-models-pytorch's multiclass Dice loss, both taking the ignore
index natively (ignored pixels count for nothing: the loss of a batch does not change when
ignored pixels are added). Its scores (one confusion matrix over all test pixels, MONAI's
confusion-matrix metric) are in :mod:`.metrics`.

**Exposure.** Training data comes in *parts* (the real training patches, the synthetic ones);
every step draws ``batch_size`` patches from *each* part, each part with its own random stream
(``numpy.random.default_rng([seed, part])``, its draws and augmentations). So the real part of a
"real + synthetic" batch is exactly the batch of the "real" setting (same patches, same flips,
in the same order) and the synthetic patches come on top: at a fixed step budget, adding
synthetic data never means fewer real patches seen, and a gap between the two settings is the
synthetic data's doing. (Drawing from the pooled set instead halves the real patches seen;
doubling the steps would restore them only on average and changes the learning-rate schedule.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from htd_core import thread_governor
from htd_core.errors import InputError

#: One part of the training data: uint8 images N x S x S x 3 and masks N x S x S.
Part = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Budget:
    """How long and how large one training run is (identical across the compared settings).

    Attributes:
        steps: optimizer steps.
        input_size: patch side the network sees (images are resized to it).
        batch_size: patches drawn per step from each part of the data (see the module
            docstring: "real + synthetic" draws this many of each).
        lr: peak learning rate of the one-cycle schedule (AdamW).
        encoder: segmentation-models-pytorch encoder (``tu-<timm name>`` for timm's).
        output_stride: 8 or 16, the encoder's (8: dilated last stages, a finer ASPP grid).
        pretrained: start the encoder from the ImageNet weights installed offline
            (:data:`.network.PRETRAINED`); else random initialisation.
        atrous_rates: the ASPP's three rates (None: scaled to the grid,
            :func:`.network.atrous_rates`).

    Raises:
        InputError: a value out of range (names it); the encoder is checked where the
            evaluator is built (:func:`.network.check_encoder` imports smp).
    """

    steps: int
    input_size: int
    batch_size: int
    lr: float = 1e-3
    encoder: str = "tu-tf_efficientnet_lite0"
    output_stride: int = 8
    pretrained: bool = True
    atrous_rates: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        from htd_core.options import check_int, check_number

        check_int(self.steps, "deeplabv3plus: steps", 1)
        check_int(self.input_size, "deeplabv3plus: input_size", 32)
        check_int(self.batch_size, "deeplabv3plus: batch_size", 2)
        check_number(self.lr, "deeplabv3plus: lr", 0.0, above=True)
        if self.output_stride not in (8, 16):
            raise InputError(f"deeplabv3plus: output_stride={self.output_stride!r}; use 8 or 16")
        if not isinstance(self.pretrained, bool):
            raise InputError(f"deeplabv3plus: pretrained={self.pretrained!r}; use true or false")
        if self.atrous_rates is not None:
            rates = tuple(self.atrous_rates)
            if len(rates) != 3 or not all(isinstance(r, int) and r >= 1 for r in rates):
                raise InputError(f"deeplabv3plus: atrous_rates={rates}; give three integers >= 1")
            object.__setattr__(self, "atrous_rates", rates)
        if self.input_size % 16:  # a multiple of either output stride
            size = self.input_size
            raise InputError(
                f"deeplabv3plus: input_size={size} must be a multiple of 16 (the network's "
                f"largest output stride), e.g. {size - size % 16 or 16} or {size + 16 - size % 16}"
            )


#: Presets: ``tiny`` for tests (seconds), ``small`` for CPU runs (64 px, the experiment's patch
#: side; its steps where held-out mIoU on real GlaS and WSSS4LUAD stops rising, measured by
#: benchmarks/segmentation_curve.py), ``paper`` for a GPU.
BUDGETS = {
    "tiny": Budget(steps=2, input_size=32, batch_size=2, encoder="tu-test_resnet",
                   pretrained=False),
    "small": Budget(steps=1200, input_size=64, batch_size=8),
    "paper": Budget(steps=10000, input_size=256, batch_size=16, lr=5e-4),
}  # fmt: skip


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


def to_tensors(
    images: np.ndarray, masks: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB in 0-1 N x 3 x S x S (the network normalises) and int64 labels N x S x S."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(np.ascontiguousarray(masks)).to(device).long()
    return x / 255.0, y


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


def draw_batch(parts: Sequence[Part], rngs: Sequence[np.random.Generator], batch_size: int,
               augment: bool) -> Part:  # fmt: skip
    """One training batch: ``batch_size`` patches of each part (with replacement, augmented),
    each part drawn by its own generator, concatenated in part order."""
    images, masks = [], []
    for (part_images, part_masks), rng in zip(parts, rngs, strict=True):
        idx = rng.integers(0, len(part_images), size=batch_size)
        bi, bm = part_images[idx], part_masks[idx]
        if augment:
            bi, bm = _augment(bi, bm, rng)
        images.append(bi)
        masks.append(bm)
    return np.concatenate(images), np.concatenate(masks)


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
    parts: Sequence[Part],
    *,
    num_classes: int,
    ignore_index: int,
    budget: Budget,
    seed: int,
    device: str = "cpu",
    augment: bool = True,
) -> tuple[torch.nn.Module, float]:
    """Train a fresh DeepLabv3+ (:func:`.network.build_network`) on ``parts`` of the data.

    Every step takes ``budget.batch_size`` patches from each part, part ``j`` drawn (with
    replacement) and augmented by ``numpy.random.default_rng([seed, j])`` (the module
    docstring says why). Returns (model in eval mode, mean loss of the last tenth of steps).
    """
    from htd_plugins.evaluators.segmentation.network import build_network

    if not parts or any(len(images) == 0 for images, _ in parts):
        raise InputError("deeplabv3plus: a part of the training data is empty")
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_network(budget, num_classes).to(dev)
    optimiser = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(  # 10 steps x 0.1: torch divides by zero
        optimiser, max_lr=budget.lr, total_steps=budget.steps,
        pct_start=0.2 if budget.steps == 10 else 0.1,
    )  # fmt: skip
    criterion = segmentation_loss(ignore_index)
    rngs = [np.random.default_rng([seed, j]) for j in range(len(parts))]
    losses: list[float] = []
    model.train()
    for _ in range(budget.steps):
        x, y = to_tensors(*draw_batch(parts, rngs, budget.batch_size, augment), dev)
        loss = criterion(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DeepLabv3+ loss became {float(loss)}; lower lr={budget.lr}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        thread_governor.tick(1, "segmentation")
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
        x, _ = to_tensors(images[start : start + batch_size], np.zeros((0,), np.uint8), dev)
        out.append(model(x).argmax(1).cpu())
    return torch.cat(out)


def chance_predictions(labels: torch.Tensor, frequencies: np.ndarray, seed: int) -> torch.Tensor:
    """Random class maps drawn per pixel from ``frequencies`` (the chance reference)."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(len(frequencies), size=tuple(labels.shape), p=frequencies)
    return torch.from_numpy(draws)
