"""Training checkpoints, written so that a kill never leaves half a file.

``<output>/checkpoints/step-00000100.pt``: one ``torch.save`` file, written to a temp file and
renamed, loaded with ``weights_only=True``; the last few are kept. Model folders (the saved,
loadable model) are :mod:`htd_plugins.backbones.ldm.model_folder`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from htd_core.errors import InputError
from htd_core.io import atomic_save_torch

_CKPT_GLOB = "step-*.pt"


def checkpoint_dir(output_dir: str | Path) -> Path:
    """The folder a fit in ``output_dir`` writes its checkpoints to (``step-NNNNNNNN.pt``, the step
    zero-padded): ``output_dir/checkpoints``. A checkpoint copied there makes the next fit in
    ``output_dir`` resume from it. Nothing is created or read."""
    return Path(output_dir) / "checkpoints"


def save_checkpoint(
    output_dir: str | Path, step: int, state: Mapping[str, Any], keep_last: int = 2
) -> Path:
    """Write ``state`` as the checkpoint of ``step`` and delete all but the last ``keep_last``."""
    folder = checkpoint_dir(output_dir)
    path = folder / f"step-{step:08d}.pt"
    atomic_save_torch(path, dict(state))
    for old in list_checkpoints(output_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint files of ``output_dir``, oldest first."""
    folder = checkpoint_dir(output_dir)
    return sorted(folder.glob(_CKPT_GLOB)) if folder.is_dir() else []


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain containers only: ``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise InputError(
            f"checkpoint {path} cannot be read ({exc}); delete it to resume from the one before"
        ) from None


def config_diff(
    saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """``key: saved -> current`` for every key whose value differs (``ignore`` skipped)."""
    skip = set(ignore)
    keys = sorted((set(saved) | set(current)) - skip)
    return [
        f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
        for k in keys
        if _jsonable(saved.get(k)) != _jsonable(current.get(k))
    ]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
