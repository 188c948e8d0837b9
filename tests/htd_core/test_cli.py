from __future__ import annotations

import json

import htd_core
from htd_core.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert htd_core.__version__ in capsys.readouterr().out


def test_plugins_json_lists_builtins(capsys, builtin_manager):
    assert main(["plugins", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert infos["semantic_map"]["status"] == "ok"
    assert infos["semantic_map"]["components"] == [
        {"kind": "condition builder", "name": "semantic_map"}
    ]
    assert infos["unconditional"]["distribution"] == "heterotissue"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "plugins" in capsys.readouterr().err
