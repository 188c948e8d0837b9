"""The DeepLabv3+ trained on the real training patches, trained once and kept in ``cache_dir``.

``deeplabv3plus``'s ``real`` setting and ``layout_adherence`` need the same network: trained on
the real training patches only, it depends on no synthetic set. :func:`real_network` trains it
or loads it from ``cache_dir/segmentation-real-<key>.safetensors``, where the key hashes
everything the weights depend on: the real training images and masks (in order), the class
list and ignore index, the network budget (steps, size, batch, lr, encoder, output stride,
pretrained and the initial weights' digest, ASPP rates), the seed, the device and the
augmentation. Both evaluators call it with the same arguments, so in one experiment the real
network is trained once for both evaluators and every arm. The held-out images are not in the
key: the scores are recomputed from the loaded network (a prediction, seconds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core.types import ClassMap
from htd_plugins.evaluators.segmentation.training import Budget, Part, train_model

#: Bumped when training changes in a way the key does not see.
VERSION = "segmentation-real-2"


def cache_key(train: Part, class_map: ClassMap, budget: Budget, seed: int, device: str,
              augment: bool) -> str:  # fmt: skip
    """24 hex characters of a sha256 over everything the real network depends on."""
    from htd_plugins.evaluators.segmentation.network import weights_id

    images, masks = train
    h = hashlib.sha256(json.dumps([
        VERSION, vars(budget), weights_id(budget.encoder, budget.pretrained), int(seed),
        str(device), bool(augment), list(class_map.names), class_map.ignore_index,
        list(images.shape), list(masks.shape),
    ], sort_keys=True, default=str).encode())  # fmt: skip
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(masks, dtype=np.uint8).tobytes())
    return h.hexdigest()[:24]


def real_network(
    train: Part,
    *,
    class_map: ClassMap,
    budget: Budget,
    seed: int,
    device: str,
    augment: bool,
    cache_dir: str | Path | None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network trained on ``train`` (images N x S x S x 3, masks N x S x S), from the cache
    when there (see the module docstring).

    Returns:
        (model in eval mode on ``device``, ``{"n_train", "final_loss", "cache"}``) where
        ``cache`` is ``"trained"``, ``"reused"`` or ``"off"``.
    """
    k, ignore = len(class_map), class_map.ignore_index
    path = None
    if cache_dir is not None:
        key = cache_key(train, class_map, budget, seed, device, augment)
        path = Path(cache_dir) / f"segmentation-real-{key}.safetensors"
    if path is not None and path.is_file():
        return _load(path, budget, k, device)
    model, loss = train_model([train], num_classes=k, ignore_index=ignore, budget=budget,
                              seed=seed, device=device, augment=augment)  # fmt: skip
    info = {"n_train": len(train[0]), "final_loss": loss, "cache": "off"}
    if path is not None:
        _save(path, model, info)
        info["cache"] = "trained"
    return model, info


def _save(path: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    from safetensors.torch import save

    from htd_core.io import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"n_train": str(info["n_train"]), "final_loss": repr(float(info["final_loss"]))}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _load(path: Path, budget: Budget, k: int, device: str) -> tuple[torch.nn.Module, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from htd_plugins.evaluators.segmentation.network import build_network

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    model = build_network(budget, k, load_weights=False)
    model.load_state_dict(load_file(str(path)), strict=True)
    info = {"n_train": int(meta["n_train"]), "final_loss": float(meta["final_loss"]),
            "cache": "reused"}  # fmt: skip
    return model.to(torch.device(device)).eval(), info
