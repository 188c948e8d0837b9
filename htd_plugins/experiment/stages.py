"""Stages of an experiment run: each keyed by a hash of its inputs, reused when the key
matches, redone (its stale working folder removed) when it does not."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
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


def own_folder(folder: Path, key: str) -> None:
    """Make ``folder`` (a stage's working folder inside the run) belong to ``key``: a folder
    left by the same stage with other inputs is removed (htd wrote it), so nothing stale is
    resumed."""
    stamp = folder.parent / f".{folder.name}.stage-key"  # beside it: the folder stays htd's kind
    if folder.is_dir() and (not stamp.is_file() or stamp.read_text() != key):
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
