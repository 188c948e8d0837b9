"""Stages of an experiment run: each keyed by a hash of its inputs, reused when the key
matches, redone (its stale working folder removed) when it does not."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any


def stage_key(*parts: Any) -> str:
    """A short hash of JSON-able ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Stages:
    """Finished stages of one run: ``OUT/stages/<name>.json`` = ``{"key", "result"}``."""

    def __init__(self, out: Path, log: Callable[[str], None]) -> None:
        self.folder, self.log = out / "stages", log

    def _path(self, name: str) -> Path:
        return self.folder / (name.replace(":", "--") + ".json")

    def get(self, name: str, key: str) -> dict[str, Any] | None:
        """The result of stage ``name`` if it finished with ``key``, else None."""
        path = self._path(name)
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                self.log(f"{name}: done before, reused")
                return saved["result"]
        return None

    def finished(self, name: str, key: str) -> bool:
        """Whether stage ``name`` finished with ``key`` (as :meth:`get`, without its log line)."""
        path = self._path(name)
        return path.is_file() and json.loads(path.read_text()).get("key") == key

    def put(self, name: str, key: str, result: dict[str, Any]) -> dict[str, Any]:
        from htd_core.io import atomic_write_json

        atomic_write_json(self._path(name), {"key": key, "result": result})
        return result


def own_folder(folder: Path, key: str, also: Collection[str] = ()) -> None:
    """Make ``folder`` (a stage's working folder inside the run) belong to ``key``: a folder
    left by the same stage with other inputs (a key neither ``key`` nor in ``also``) is removed
    (htd wrote it), so nothing stale is resumed."""
    stamp = folder.parent / f".{folder.name}.stage-key"  # beside it: the folder stays htd's kind
    kept = (key, *also)
    if folder.is_dir() and (not stamp.is_file() or stamp.read_text() not in kept):
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


#: Options that say where or how visibly a run goes, not what it computes: left out of keys,
#: so a rerun with another ``--device`` or ``--no-progress`` resumes.
UNKEYED = ("device", "progress")


def keyed_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` less :data:`UNKEYED`."""
    return {k: v for k, v in options.items() if k not in UNKEYED}


def keyed_fit(fit: Mapping[str, Any]) -> dict[str, Any]:
    """``fit`` as keyed: a later option given at its original value (``snr_gamma: null``)
    trains what runs before it trained, so it keys as absent and their stages are reused."""
    from htd_plugins.backbones import TrainOptions

    later = TrainOptions.LATER
    return {k: v for k, v in keyed_options(fit).items() if not (k in later and v == later[k])}
