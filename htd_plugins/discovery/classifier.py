"""Distilled phenotype classifier: a timm ViT-small maps a patch to its k=P phenotype.

The teacher (foundation encoder + nearest centroid) labels the stored patches; the student
is trained on those labels from pixels, so new slides need no teacher embedding. The held-out
split is :mod:`htd_plugins.discovery.holdout` (whole slides, or blocks with a margin, so no
held-out patch shares pixels with a training patch). Weights are saved with safetensors beside
a JSON config. Training resumes from its last finished epoch: one checkpoint file
(``checkpoint.pt``: weights, optimizer, schedule, epoch, history) is replaced atomically after
every epoch, and epoch e draws its order and augmentations from a generator seeded by
(seed, e), so an interrupted and resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import thread_governor
from htd_core.errors import InputError
from htd_core.io import atomic_open, atomic_write_json

ARCH = "vit_small_patch16_224"
#: The one training checkpoint of a classifier folder (replaced atomically every epoch).
CHECKPOINT = "checkpoint.pt"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build_student(
    num_classes: int, input_size: int, arch: str = ARCH, depth: int | None = None
) -> Any:
    """Randomly initialised timm ViT (default ViT-small/16) for ``input_size`` px inputs.

    ``arch`` and ``depth`` exist for tests (a one-block ``vit_tiny_patch16_224`` trains in
    seconds); reported results use the default.
    """
    import timm

    if input_size < 16 or input_size % 16:
        raise InputError(f"input_size={input_size} must be a multiple of 16 (ViT patch size)")
    extra = {} if depth is None else {"depth": int(depth)}
    try:
        return timm.create_model(
            arch, pretrained=False, num_classes=num_classes, img_size=input_size, **extra
        )
    except RuntimeError as exc:
        raise InputError(f"student arch {arch!r}: {exc}") from exc


def to_pixels(images: np.ndarray, input_size: int) -> Any:
    """uint8 N x H x W x 3 -> normalised float N x 3 x S x S."""
    import torch
    import torch.nn.functional as F

    x = (
        torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
        .permute(0, 3, 1, 2)
        .float()
        .div_(255)
    )
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
        )
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor(STD).view(1, 3, 1, 1)


class StudentClassifier:
    """A trained student: ``predict(uint8 patches) -> leaf ids`` plus its config."""

    def __init__(self, model: Any, config: dict[str, Any]) -> None:
        self.model = model.eval()
        self.config = config
        self.input_size = int(config["input_size"])

    @classmethod
    def load(cls, folder: str | Path) -> StudentClassifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, weights = folder / "classifier.json", folder / "classifier.safetensors"
        if not cfg_path.exists() or not weights.exists():
            raise InputError(
                f"{folder} holds no distilled classifier (classifier.json + .safetensors): run "
                "`htd discover distill` first"
            )
        config = json.loads(cfg_path.read_text())
        arch = config.get("arch", ARCH)
        model = build_student(
            int(config["num_classes"]), int(config["input_size"]), arch, config.get("depth")
        )
        try:
            missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
        except RuntimeError as exc:  # shape mismatch
            raise InputError(
                f"{weights} does not match {arch} as configured in {cfg_path}: {exc}"
            ) from exc
        if missing or unexpected:
            raise InputError(
                f"{weights} does not match {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return cls(model, config)

    def logits(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                out.append(
                    self.model(to_pixels(images[start : start + batch_size], self.input_size))
                )
        return (
            torch.cat(out).numpy() if out else np.zeros((0, self.config["num_classes"]), np.float32)
        )

    def predict(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
        return self.logits(images, batch_size).argmax(1)


def save_student(folder: Path, model: Any, config: dict[str, Any]) -> None:
    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_open(folder / "classifier.safetensors") as fh:
        fh.write(save(state))
    atomic_write_json(folder / "classifier.json", config)


def train_student(
    images: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    out: Path,
    *,
    num_classes: int,
    input_size: int = 64,
    arch: str = ARCH,
    depth: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 5e-4,
    seed: int = 0,
    run_key: str = "",
    progress: bool = True,
    callbacks: Sequence[Callable[[int, Any], None]] = (),
) -> tuple[Any, dict[str, Any]]:
    """Train (resuming from ``out/checkpoint.pt``); returns the model and training history.

    ``callbacks`` are called as ``f(epoch, model)`` after each epoch's checkpoint is written
    (``epoch`` counts finished epochs).

    Raises:
        InputError: ``out`` holds a checkpoint of another run (``run_key`` differs).
    """
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = build_student(num_classes, input_size, arch, depth)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=lr,
        total_steps=max(1, epochs * -(-int(train.sum()) // batch_size)),
        pct_start=0.1,
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    state_path = out / CHECKPOINT
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        if state.get("run_key") != run_key:
            raise InputError(
                f"{out} holds a checkpoint of another distillation ({state.get('run_key')}): "
                "use another --out folder, or the same clustering and options to resume"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        if start_epoch and progress:
            print(f"distill: resuming after epoch {start_epoch} of {epochs}", file=sys.stderr)
    index = np.nonzero(train)[0]
    for epoch in range(start_epoch, epochs):
        model.train()
        rng = np.random.default_rng([seed, epoch])  # epoch e's order and augmentations
        torch.manual_seed(seed * 100_003 + epoch)  # any torch randomness (dropout) too
        order = rng.permutation(index)
        total, n = 0.0, 0
        bar = tqdm(range(0, len(order), batch_size), desc=f"distill epoch {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, file=sys.stderr)  # fmt: skip
        for start in bar:
            batch = np.sort(order[start : start + batch_size])
            x = to_pixels(images[batch], input_size)
            k = int(rng.integers(4))  # histology has no orientation: random rot90 and flip
            x = torch.rot90(x, k, (2, 3))
            if rng.random() < 0.5:
                x = x.flip(3)
            loss = torch.nn.functional.cross_entropy(model(x), torch.as_tensor(labels[batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(batch), n + len(batch)
            thread_governor.tick(len(batch), "distill")
            bar.set_postfix(loss=f"{total / n:.3f}")
        history.append({"epoch": epoch + 1, "train_loss": total / max(n, 1)})
        state = {"epoch": epoch + 1, "history": history, "run_key": run_key,
                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict()}  # fmt: skip
        with atomic_open(state_path) as fh:  # one file: weights and counters never mismatch
            torch.save(state, fh)
        for callback in callbacks:
            callback(epoch + 1, model)
    return model.eval(), {"history": history}
