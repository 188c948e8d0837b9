"""The experiment file's ``figure`` section: what ``figure.png`` shows (read with the file, before
any work; drawn by :mod:`.figures`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_core.errors import ConfigError


def figure_options(value: Any, base: Path | None, label: str) -> dict[str, Any]:
    """``figure: {rows: 8, autoencoders: {TAEF2: ../shared/weights/taef2}}``: how many layouts
    ``figure.png`` shows and extra autoencoder folders whose round trips it shows beside the
    run's own (each must be an existing folder; relative paths are relative to the file).

    Raises:
        ConfigError: an unknown key, ``rows`` not an integer >= 1, or a label whose folder
            does not exist (naming the file and the key).
    """
    from htd_core.config import resolve_paths
    from htd_core.registry import suggest

    if not isinstance(value, Mapping):
        raise ConfigError(f"{label}: figure: expected a mapping, e.g. figure: {{rows: 8}}")
    for key in value:
        if key not in ("rows", "autoencoders"):
            raise ConfigError(
                f"{label}: figure key {key!r} unknown.{suggest(str(key), ['rows', 'autoencoders'])}"
                " The figure keys: rows, autoencoders"
            )
    rows = value.get("rows", 8)
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        raise ConfigError(f"{label}: figure.rows={rows!r}: give an integer >= 1")
    autoencoders = value.get("autoencoders") or {}
    if not isinstance(autoencoders, Mapping):
        raise ConfigError(
            f"{label}: figure.autoencoders: give a mapping LABEL: FOLDER, e.g. "
            "{TAEF2: ../shared/weights/taef2}"
        )
    autoencoders = resolve_paths(dict(autoencoders), base, f"{label}: figure.autoencoders")
    for name, folder in autoencoders.items():
        if not isinstance(folder, str) or not Path(folder).expanduser().is_dir():
            raise ConfigError(
                f"{label}: figure.autoencoders.{name}={folder!r} is not a folder: give the folder "
                "of an autoencoder (`htd train-vae`'s output, or TAEF2's two weight files)"
            )
    return {"rows": rows, "autoencoders": {str(k): str(v) for k, v in autoencoders.items()}}
