"""Where the real data lives: ``HTD_SHARED_DATA`` or ``../shared/data`` beside the repo; and
the pretrained TAEF2 weights: ``HTD_TAEF2`` or ``../shared/weights/taef2``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HTD_SHARED_DATA"


def shared_data_dir(required: bool = False) -> Path | None:
    """The shared real-data folder, or None when absent (``required=True`` raises instead).

    Uses ``$HTD_SHARED_DATA`` when set (a missing folder there means "no data"), else
    ``../shared/data`` relative to the repository root (the folder above ``htd_core``) or to
    the current directory.
    """
    if os.environ.get(ENV_VAR):  # an explicit setting wins, also to say "no data here"
        candidates = [Path(os.environ[ENV_VAR])]
    else:
        repo_root = Path(__file__).resolve().parents[1]
        candidates = [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    if required:
        from htd_core.errors import InputError

        raise InputError(
            f"real data folder not found (looked at {', '.join(map(str, candidates))}); "
            f"set {ENV_VAR} to the folder that holds slides/, glas/, ..."
        )
    return None


#: Environment variable naming the folder of TAEF2's two weight files.
TAEF2_ENV_VAR = "HTD_TAEF2"


def taef2_dir() -> Path | None:
    """The folder of TAEF2's published weights (``taef2_encoder.pth``, ``taef2_decoder.pth``),
    or None when absent: ``$HTD_TAEF2`` when set, else ``weights/taef2`` beside the shared data
    folder (``../shared/weights/taef2``)."""
    if os.environ.get(TAEF2_ENV_VAR):
        candidates = [Path(os.environ[TAEF2_ENV_VAR])]
    else:
        repo_root = Path(__file__).resolve().parents[1]
        candidates = [repo_root.parent / "shared" / "weights" / "taef2",
                      Path.cwd().parent / "shared" / "weights" / "taef2"]  # fmt: skip
    for c in candidates:
        if (c / "taef2_encoder.pth").is_file() and (c / "taef2_decoder.pth").is_file():
            return c
    return None
