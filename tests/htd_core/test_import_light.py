"""htd_core and plugin discovery must not import heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["diffusers", "monai", "tiatoolbox", "timm", "sklearn", "segmentation_models_pytorch"]


def loaded_after(code: str) -> list[str]:
    probe = (
        f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_htd_core_is_light():
    assert loaded_after("import htd_core, htd_core.pipeline, htd_core.testing.samples") == []


def test_cli_parser_is_light():
    assert loaded_after("from htd_core.cli import build_parser; build_parser()") == []


def test_loading_all_plugins_is_light():
    code = "from htd_core.plugins import PluginManager\nPluginManager().registries"
    assert loaded_after(code) == []


def test_the_pytest_plugin_costs_nothing_until_a_fixture_is_used():
    """pytest imports the ``pytest11`` plugin module in every session of the environment: it
    must not import torch, numpy or the plugin manager (only pytest and the standard library);
    a fixture imports what it needs when it runs."""
    code = (
        "import sys, json\nimport htd_core.testing.fixtures\n"
        "print(json.dumps([m for m in ('torch', 'numpy', 'htd_core.plugins', 'htd_core.types')"
        " if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
