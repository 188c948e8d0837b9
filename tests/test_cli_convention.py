"""Every registered verb follows the one command-line convention of docs/cli.md.

The verbs come from the registry (``htd_core.cli.build_parser``), never from a list here: a
verb a plugin adds must appear in docs/cli.md's table, with the options its row says.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from htd_core.cli import build_parser, main
from htd_core.cli_options import DeprecatedAlias

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COLUMNS = ("out", "threads", "device", "progress", "options", "old")
#: Spellings of the conventions' options that no verb may show in --help.
OLD = {"--output-dir", "--output", "--quiet", "--progress", "--silent"}


def leaves(
    parser: argparse.ArgumentParser, prefix: str = "htd"
) -> dict[str, argparse.ArgumentParser]:
    """``{"htd sample": parser, "htd discover embed": parser, ...}``: the parsers that run."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix: parser}
    found = {}
    for name, sub in subs[0].choices.items():
        found.update(leaves(sub, f"{prefix} {name}"))
    return found


def table() -> dict[str, dict[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`htd"):
            rows[cells[0].strip("`")] = dict(zip(COLUMNS, cells[1:], strict=True))
    return rows


def visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


@pytest.fixture
def verbs(builtin_manager):
    return leaves(build_parser())


def test_every_registered_verb_has_a_row_and_every_row_a_verb(verbs):
    rows = table()
    assert sorted(set(verbs) - set(rows)) == [], "verbs missing from docs/cli.md's table"
    assert sorted(set(rows) - set(verbs)) == [], "docs/cli.md lists verbs that do not exist"
    assert {"htd sample", "htd train", "htd crop-bank", "htd discover embed"} <= set(verbs)


def test_every_verb_has_the_options_of_its_row(verbs):
    rows, problems = table(), []
    for name, parser in verbs.items():
        row, shown = rows.get(name), visible(parser)
        if row is None:
            continue
        expect = {
            "--out": row["out"] != "—",
            "--threads": row["threads"] != "—",
            "--device": row["device"] != "—",
            "--no-progress": row["progress"] != "—",
            "-o": row["options"] != "—",
        }
        for option, wanted in expect.items():
            if (option in shown) != wanted:
                problems.append(f"{name}: {option} {'missing' if wanted else 'not in its row'}")
        if "-o" in shown and "KEY=VALUE" not in (shown["-o"].metavar or ""):
            problems.append(f"{name}: -o is not KEY=VALUE")
        problems += [f"{name}: shows the old spelling {s}" for s in OLD & set(shown)]
        positional = [a.dest for a in parser._actions if not a.option_strings]
        if {"out", "output", "output_dir"} & set(positional):
            problems.append(f"{name}: the output is a visible positional argument")
        if "--device" in shown and "--threads" not in shown:
            problems.append(f"{name}: --device without --threads")
        if "--threads" in shown and "--no-progress" not in shown:
            problems.append(f"{name}: --threads (compute) without --no-progress")
    assert problems == []


def test_old_spellings_are_hidden_deprecated_aliases_listed_in_the_table(verbs):
    rows, problems = table(), []
    for name, parser in verbs.items():
        shown = visible(parser)
        for action in parser._actions:
            if action.help != argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if not isinstance(action, DeprecatedAlias):
                problems.append(f"{name}: hidden {action.dest} is not a deprecated alias")
                continue
            if action.replacement not in shown:
                problems.append(f"{name}: {action.replacement} (replacement) is not an option")
            spelling = action.option_strings[0] if action.option_strings else "OUTPUT"
            if spelling not in rows.get(name, {}).get("old", ""):
                problems.append(f"{name}: old spelling {spelling} is not in docs/cli.md")
    assert problems == []


def test_every_help_renders_without_doubled_percent_signs(verbs):
    for name, parser in verbs.items():
        text = parser.format_help() + (parser.description or "")
        assert "%%" not in text, f"{name} --help prints '%%'"
    text = verbs["htd reader-study report"].format_help()
    assert "95% intervals" in text


@pytest.mark.parametrize(
    ("argv", "old", "new"),
    [
        (["train", "no-such.yaml", "--output-dir", "x"], "--output-dir", "--out"),
        (["sample", "no-such-sampler", "OLD_OUT"], "OUTPUT", "--out"),
        (
            ["discover", "cluster", "--store", "s", "--out", "o", "--quiet"],
            "--quiet",
            "--no-progress",
        ),
    ],
)
def test_an_old_spelling_still_works_and_says_one_deprecation_line(
    argv, old, new, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2  # each fails later, on its missing input: parsing accepted it
    err = capsys.readouterr().err.splitlines()
    assert (
        f"htd {' '.join(argv[:2] if argv[0] == 'discover' else argv[:1])}: warning: {old} is deprecated; use {new}"
        in err
    )
    assert not (tmp_path / "OLD_OUT").exists()


def test_out_is_required_whichever_way_it_is_spelled(capsys):
    assert main(["sample", "tiles", "-o", "root=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "htd sample: error: --out PATH is required (where htd sample writes); see htd sample --help"
    ]


def test_sample_help_lists_the_named_samplers_options(capsys, builtin_manager):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "tiles", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "options of sampler 'tiles' (give them as -o KEY=VALUE):" in out
    assert re.search(r"^  root \(required\)\n      folder holding images/ and masks/", out, re.M)
    assert "  patch_size (default None)" in out and "  split_seed (default 0)" in out
    with pytest.raises(SystemExit):
        main(["sample", "--help"])  # no sampler named: the verb's help only
    assert "options of sampler" not in capsys.readouterr().out


def test_an_old_positional_output_after_options_still_works(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "tiles", "-o", f"root={tmp_path / 'none'}", "OLD_OUT"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "htd sample: warning: OUTPUT is deprecated; use --out" in err
    assert "tile folder" in err[-1]  # parsed: it failed on the missing input, not on arguments
    assert main(["sample", "tiles", "--out", "x", "-o", "root=y", "stray", "words"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("error: unrecognized arguments: stray words; see htd sample --help")
    )
