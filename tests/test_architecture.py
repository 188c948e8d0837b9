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
    tree = ast.parse("def f():\n    from htd_plugins.backbones.ldm import kl\n")
    assert "htd_plugins.backbones.ldm.kl" in imported(tree, "htd_core.pipeline")
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert "htd_core.config" in graph()["htd_core.pipeline"]


#: The two layers of ``htd_plugins`` (docs/architecture.md). Components are registered by name
#: (and the slide library and pictures they share); applications compose them.
COMPONENTS = (
    "condition_builders", "samplers", "backbones", "encoders", "evaluators", "slides", "pictures",
)  # fmt: skip
APPLICATIONS = (
    "commands", "demo", "discovery", "evaluation", "experiment", "reader_study", "slide_synthesis",
)  # fmt: skip


def layer_package(module: str) -> str | None:
    """``htd_plugins.<package>`` of a module (None outside ``htd_plugins``)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "htd_plugins" and len(parts) > 1 else None


def test_every_plugin_package_has_a_layer():
    found = {layer_package(m) for m in MODULES} - {None}
    assert found <= set(COMPONENTS) | set(APPLICATIONS), "give each package a layer"


def layer_violations(
    module: str, tree: ast.AST, modules: dict[str, Path] | None = None
) -> list[str]:
    """The layering rules broken by one module's imports (docs/architecture.md):

    1. a component never imports an application (not even lazily, inside a function);
    2. an application imports a component only through its package's public face: the package
       itself (``from htd_plugins.slides import Slide``), never a submodule, and only names
       the face lists in ``__all__`` (a one-module component, ``pictures``, is its own face).
    """
    mine = layer_package(module)
    if mine is None:
        return []
    bad = []
    for target, names in imported_names(tree, module, modules or MODULES):
        other = layer_package(target)
        if other is None or other == mine:
            continue
        if mine in COMPONENTS and other in APPLICATIONS:
            bad.append(f"{module} (component) imports the application {target}")
        elif mine in APPLICATIONS and other in COMPONENTS:
            face = f"htd_plugins.{other}"
            if target != face:
                bad.append(f"{module} imports {target}, not the public face {face}")
                continue
            public = public_names(face) if (modules or MODULES) is MODULES else None
            hidden = sorted(n for n in names if public is not None and public and n not in public)
            bad += [
                f"{module} imports {face}.{n}, which {face}.__all__ does not list" for n in hidden
            ]
    return bad


def imported_names(tree: ast.AST, current: str, modules: dict[str, Path]):
    """(module, names) of every import in ``tree``: ``from a.b import c`` gives ``("a.b.c", [])``
    when ``a.b.c`` is a module, else ``("a.b", ["c"])``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full, []) if full in modules else (node.module, [alias.name])


def test_components_never_import_applications_and_applications_use_public_faces():
    bad = [
        v
        for name, path in MODULES.items()
        for v in layer_violations(name, ast.parse(path.read_text()))
    ]
    assert bad == []


def test_the_layer_rules_can_fail():
    """A component module that imports an application, and an application module that
    reaches into a component's submodule, each break a rule (even inside a function)."""
    fake = {**MODULES, "htd_plugins.samplers.fake": Path("fake.py")}
    component = ast.parse("def f():\n    from htd_plugins.discovery import read_map\n")
    assert layer_violations("htd_plugins.samplers.fake", component, fake) == [
        "htd_plugins.samplers.fake (component) imports the application htd_plugins.discovery"
    ]
    app = ast.parse("from htd_plugins.backbones.ldm import kl\n")
    assert layer_violations("htd_plugins.experiment.fake", app, fake) == [
        "htd_plugins.experiment.fake imports htd_plugins.backbones.ldm.kl, not the "
        "public face htd_plugins.backbones"
    ]
    hidden = ast.parse("from htd_plugins.encoders import not_public\n")
    assert layer_violations("htd_plugins.experiment.fake", hidden) == [
        "htd_plugins.experiment.fake imports htd_plugins.encoders.not_public, which "
        "htd_plugins.encoders.__all__ does not list"
    ]
    fine = ast.parse(
        "from htd_plugins.encoders import TimmEncoder\nfrom htd_core import Pipeline\n"
    )
    assert layer_violations("htd_plugins.experiment.fake", fine) == []


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


def test_the_architecture_document_names_every_module_and_package():
    """docs/architecture.md is the architecture as it stands: every module of htd_core and
    every package (or top-level module) of htd_plugins is in its layout, and every package
    of htd_plugins is in the layer lists of its rules."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    core = sorted((ROOT / "htd_core").iterdir())
    missing = [p.name for p in core if p.suffix == ".py" and p.name not in text]
    missing += [
        f"{p.name}/" for p in core if (p / "__init__.py").exists() and f"{p.name}/" not in text
    ]
    packages = {layer_package(m) for m in MODULES} - {None}
    missing += [f"htd_plugins.{p}" for p in sorted(packages) if f"`{p}`" not in text]
    assert missing == []
