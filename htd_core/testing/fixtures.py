"""pytest fixtures for htd (registered as the pytest plugin ``htd`` through the ``pytest11``
entry point, so pytest imports this module in every session of the environment).

Importing it imports pytest and the standard library only (not numpy, torch or pluggy: the
``htd_core`` package and this one load their names lazily); what a fixture needs is imported
when the fixture runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from htd_core.plugins import PluginManager


@pytest.fixture
def htd_manager() -> Iterator[PluginManager]:
    """A fresh plugin manager with entry-point autoload off, installed as the global one."""
    from htd_core.plugins import PluginManager, set_plugin_manager

    manager = PluginManager(autoload=False, disabled=set())
    previous = set_plugin_manager(manager)
    try:
        yield manager
    finally:
        set_plugin_manager(previous)


@pytest.fixture
def builtin_manager() -> Iterator[PluginManager]:
    """A fresh manager that loads the installed entry points (blocks from the environment)."""
    from htd_core.plugins import PluginManager, set_plugin_manager

    manager = PluginManager(autoload=True)
    previous = set_plugin_manager(manager)
    try:
        yield manager
    finally:
        set_plugin_manager(previous)


@pytest.fixture
def register_plugin(htd_manager: PluginManager) -> Iterator[Callable[..., str]]:
    """``register_plugin(module_or_object, name=None)`` registers into ``htd_manager`` and
    unregisters at teardown."""
    names: list[str] = []

    def _register(plugin: object, name: str | None = None) -> str:
        names.append(htd_manager.register(plugin, name))
        return names[-1]

    yield _register
    for n in names:
        htd_manager.unregister(n)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skips when it is absent (fresh clone without ../shared)."""
    from htd_core.data import shared_data_dir

    path = shared_data_dir()
    if path is None:
        pytest.skip("real data folder ../shared/data is absent (set HTD_SHARED_DATA to run)")
    return path


@pytest.fixture(scope="session")
def taef2_weights() -> Path:
    """The folder of TAEF2's two weight files; skips when absent (fresh clone without
    ../shared/weights/taef2)."""
    from htd_core.data import taef2_dir

    path = taef2_dir()
    if path is None:
        pytest.skip("TAEF2 weights ../shared/weights/taef2 are absent (set HTD_TAEF2 to run)")
    return path
