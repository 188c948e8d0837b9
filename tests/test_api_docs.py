"""The API reference (docs/api, Sphinx autodoc + napoleon) builds with warnings as errors and
documents every public name: ``htd_core``'s, ``htd_core.interfaces``' and ``htd_core.testing``'s,
and those each ``htd_plugins`` package exports (its ``__all__``)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import posixpath
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: htd_core's public faces besides the top-level names (docs/architecture.md "Public API").
CORE_FACES = ("htd_core", "htd_core.interfaces", "htd_core.testing")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The HTML reference built as ``make docs`` builds it (-W: any warning fails)."""
    pytest.importorskip("sphinx", reason="the dev extra's sphinx is not installed")
    out = tmp_path_factory.mktemp("api")
    env = {**os.environ, "HTD_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         str(ROOT / "docs" / "api"), str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, f"sphinx failed (fix the docstrings it names):\n{run.stderr}"
    return out


def public_faces() -> list[str]:
    """Modules whose ``__all__`` is public API: htd_core's faces and every htd_plugins package
    that exports names."""
    import htd_plugins

    packages = [
        f"htd_plugins.{m.name}" for m in pkgutil.iter_modules(htd_plugins.__path__) if m.ispkg
    ]
    return [*CORE_FACES, *(p for p in packages if hasattr(importlib.import_module(p), "__all__"))]


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def test_api_reference_builds_without_warnings(built):
    assert (built / "index.html").is_file()
    assert (built / "core.html").is_file() and (built / "plugins.html").is_file()


def test_every_public_name_is_documented(built):
    from sphinx.util.inventory import InventoryFile

    with open(built / "objects.inv", "rb") as fh:
        inventory = InventoryFile.load(fh, "", posixpath.join)
    data = getattr(inventory, "data", inventory)  # Sphinx >= 8.2 wraps the mapping
    documented = {name for entries in data.values() for name in entries}
    missing = []
    for face in public_faces():
        module = importlib.import_module(face)
        for name in module.__all__:
            if name == "__version__" or f"{face}.{name}" in documented:
                continue
            target = getattr(module, name)
            homes = [d for d in documented if d.rsplit(".", 1)[-1] == name]
            if not any(_resolve(d) is target for d in homes):
                missing.append(f"{face}.{name}")
    assert missing == [], f"public names missing from docs/api: {missing}"


def test_faces_list_the_lazy_names():
    """dir() of a package with lazy exports lists them (tab completion, autodoc)."""
    for face in public_faces():
        module = importlib.import_module(face)
        assert set(module.__all__) <= set(dir(module)), face
