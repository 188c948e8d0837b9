"""Meta-tests: every hookspec is typed, documented in docs/plugins.md, and tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from htd_core import hookspecs
from htd_core.plugins import KINDS
from htd_core.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("htd_") and callable(f))


def test_hook_surface_matches_registries():
    assert HOOKS == sorted(KINDS)


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_is_typed_and_documented(name):
    fn = getattr(hookspecs, name)
    sig = inspect.signature(fn)
    assert list(sig.parameters) == ["registry"]
    assert sig.parameters["registry"].annotation in ("Registry", Registry)
    assert inspect.getdoc(fn), f"{name} has no docstring"
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"`{name}(registry)`" in docs, f"{name} is not documented in docs/plugins.md"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name):
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != Path(__file__).name]
    assert any(name in p.read_text() for p in tests), f"no test exercises {name}"
