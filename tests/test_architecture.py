"""The layout's rules, checked on the source: a core that imports no plugin, no import cycles,
and docs/examples that teach the public API only (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("htd_core", "htd_plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(p): p
    for pkg in PACKAGES
    for p in sorted((ROOT / pkg).rglob("*.py"))
    if "__pycache__" not in p.parts
}


def imported(tree: ast.AST, current: str) -> set[str]:
    """Every module named by an import statement anywhere in the file (top level or inside a
    function): ``from a.b import c`` names ``a.b.c`` when that is a module, else ``a.b``."""
    names: set[str] = set()
    package = current if MODULES.get(current, Path()).name == "__init__.py" else current
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if package != current else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in MODULES else base)
    return names


def graph() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        deps = imported(ast.parse(path.read_text()), name)
        edges[name] = {d for d in deps if d in MODULES and d != name}
    return edges


def test_core_imports_no_plugin():
    offenders = {
        name: sorted(d for d in deps if d.startswith("htd_plugins"))
        for name, deps in graph().items()
        if name.startswith("htd_core")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert find_cycles(graph()) == []


def test_the_checker_sees_a_cycle_and_a_core_edge(tmp_path):
    """The two rules above can fail: a lazy import inside a function is an edge."""
    tree = ast.parse("def f():\n    from htd_plugins.backbones.ldm import autoencoder\n")
    assert "htd_plugins.backbones.ldm.autoencoder" in imported(tree, "htd_core.pipeline")
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert "htd_core.config" in graph()["htd_core.pipeline"]


DOCS = [
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "README.md",
    *sorted((ROOT / "examples").glob("*.py")),
    *sorted((ROOT / "plugins").rglob("*.py")),
    *sorted((ROOT / "plugins").rglob("*.md")),
]
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def plugin_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every ``htd_plugins`` import in a .py file or in the
    Python code blocks of a Markdown file (``import htd_plugins.x`` gives no names)."""
    text = path.read_text()
    sources = [text] if path.suffix == ".py" else CODE_BLOCK.findall(text)
    found = []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("htd_plugins"):
                found.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found += [(a.name, []) for a in node.names if a.name.startswith("htd_plugins")]
    return found


def public_names(package: str) -> set[str]:
    return set(getattr(importlib.import_module(package), "__all__", ()))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_and_examples_use_the_public_api(path):
    """Outside the packages, ``htd_plugins`` is used only through the names a kind's package
    exports (``from htd_plugins.encoders import TimmEncoder``); everything else is by
    registered name through ``htd_core`` (``create("condition_builders", "crop")``)."""
    bad = []
    for module, names in plugin_imports(path):
        if module.count(".") != 1 or not names:
            bad.append(module)
            continue
        bad += [f"{module}.{n}" for n in sorted(set(names) - public_names(module))]
    assert bad == [], f"{path.name} imports plugin internals"
