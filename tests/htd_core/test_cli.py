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


def test_a_bad_option_value_is_one_line_naming_it_and_the_fix(capsys, builtin_manager):
    """argparse's own errors follow htd's style: one line, exit 2, no usage block."""
    import pytest

    for argv, needle in (
        (
            ["train-vae", "data", "--out", "out", "--batch-size", "0"],
            "--batch-size: 0 must be an integer >= 1",
        ),
        (
            ["generate", "m", "--out", "o", "--dataset", "d", "--steps", "1.5"],
            "--steps: '1.5' is not an integer",
        ),
        (
            ["generate", "m", "--out", "o", "--dataset", "d", "--guidance", "inf"],
            "--guidance: inf must be a number >= 1",
        ),
        (
            ["evaluate", "--real", "r", "--out", "o", "--limit", "0"],
            "--limit: 0 must be an integer >= 1",
        ),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and needle in err[0], err
        assert err[0].endswith(f"see htd {argv[0]} --help")


def test_a_device_this_machine_lacks_is_one_line(capsys, builtin_manager, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["evaluate", "--real", str(tmp_path), "--synthetic", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--device", "cuda"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "htd evaluate: error: --device cuda: no CUDA device on this machine; use --device cpu"
    ]
    assert main(["evaluate", "--real", str(tmp_path), "--synthetic", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--device", "gpu0"]) == 2  # fmt: skip
    assert "is not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
