"""Reading encoder weights from local files safely, and fitting them to a model.

Only safetensors or ``torch.load(weights_only=True)`` (no arbitrary pickle). Checkpoints from
self-supervised training come wrapped (``{"state_dict": ...}``) and prefixed
(``module.backbone.conv1.weight``); :func:`fit_state_dict` unwraps and strips those, drops known
heads, and refuses anything that still does not match, naming the missing/unexpected keys.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_core.errors import InputError

#: Wrapper keys under which training scripts store the weights.
WRAPPERS = ("state_dict", "model", "teacher", "student", "module", "network", "net")
#: Parameters of classification/projection heads that feature extraction does not use.
HEADS = ("fc.", "head.", "heads.", "projector.", "projection_head.", "pre_logits.", "bn.")

_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """Short content hash (sha256, 16 hex) of a weights file, cached per path/size/mtime."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _digests[key] = h.hexdigest()[:16]
    return _digests[key]


def check_weights_file(path: str | Path, encoder: str) -> Path:
    """The path as a Path; a clear error when it does not exist."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(
            f"encoder {encoder!r}: weights file {str(path)!r} does not exist; give a local "
            "safetensors or PyTorch checkpoint file (no downloads are made)"
        )
    return p


def read_state_dict(path: str | Path, encoder: str) -> dict[str, Any]:
    """Tensors of a ``.safetensors`` file or a ``weights_only`` PyTorch checkpoint."""
    import torch

    p = check_weights_file(path, encoder)
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError) as exc:
            raise InputError(f"encoder {encoder!r}: cannot read safetensors {p}: {exc}") from exc
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle of arbitrary objects, TorchScript archive, junk
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()[0][:200]
        raise InputError(
            f"encoder {encoder!r}: cannot load {p} as a weights-only PyTorch checkpoint "
            f"({type(exc).__name__}: {reason}). Give a state dict saved "
            "with torch.save(model.state_dict()) or a .safetensors file"
        ) from exc
    if not isinstance(data, Mapping):
        raise InputError(
            f"encoder {encoder!r}: {p} holds a {type(data).__name__}, not a state dict"
        )
    return dict(data)


def unwrap(state: Mapping[str, Any]) -> dict[str, Any]:
    """Descend into wrapper entries (``state_dict``, ``model``, ``teacher``...) to the tensors."""
    import torch

    state = dict(state)
    for _ in range(3):
        if any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in WRAPPERS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = dict(inner)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def strip_prefixes(state: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """Remove the wrapper prefix (``module.backbone.``...) under which most keys match.

    Keys outside that prefix (projection heads, the other network of a teacher/student pair)
    are dropped; without any matching prefix the dict is returned unchanged.
    """
    counts: Counter[str] = Counter()
    for key in state:
        for cut in [0] + [i + 1 for i, c in enumerate(key) if c == "."]:
            if key[cut:] in expected:
                counts[key[:cut]] += 1
    if not counts:
        return state
    prefix = max(counts, key=lambda p: (counts[p], -len(p)))
    if not prefix:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def fit_state_dict(
    state: Mapping[str, Any], model: Any, encoder: str, source: str, filter_fn: Any = None
) -> dict[str, Any]:
    """A state dict that loads strictly into ``model``, or an error naming what does not fit.

    ``filter_fn(state, model)`` is an architecture's own converter (timm's ViT
    ``checkpoint_filter_fn`` resizes position embeddings and converts DINOv2 checkpoints).
    """
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = set(expected_shapes)
    tensors = strip_prefixes(unwrap(state), expected)
    if filter_fn is not None:
        tensors = dict(filter_fn(tensors, model))
    tensors = {k: v for k, v in tensors.items() if k in expected or not k.startswith(HEADS)}
    missing = sorted(expected - tensors.keys())
    unexpected = sorted(tensors.keys() - expected)
    wrong = sorted(
        f"{k} {tuple(tensors[k].shape)} != {expected_shapes[k]}"
        for k in expected & tensors.keys()
        if tuple(tensors[k].shape) != expected_shapes[k]
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if wrong:
            parts.append(f"{len(wrong)} keys of the wrong shape ({_few(wrong)})")
        raise InputError(
            f"encoder {encoder!r}: weights {source} do not fit its architecture: "
            f"{'; '.join(parts)}. Is this the checkpoint of another model? Pass the weights "
            "of this encoder's architecture"
        )
    return tensors


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
