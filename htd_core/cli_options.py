"""The options every ``htd`` verb spells the same way (the convention of docs/cli.md).

- ``--out PATH``: where a verb writes (a folder, or a file for ``generate-slide`` and
  ``crop-bank``). Old spellings (``--output-dir``, a positional OUTPUT) stay as hidden
  aliases that print one deprecation line on stderr.
- ``--threads N`` and ``--device DEVICE`` wherever a verb computes
  (:mod:`htd_core.threads`).
- ``--no-progress``: no progress bars (old spelling: ``--quiet``, a hidden alias).
- ``-o KEY=VALUE`` (repeatable, VALUE read as YAML): an option of the component the verb
  runs; a verb that runs several components takes ``COMPONENT.KEY=VALUE`` and sends a bare
  KEY to the one component that has it.

Verbs declare these through the ``add_*`` functions below, so the spelling, help text and
aliases live in one place; ``tests/test_cli_convention.py`` checks every registered verb.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

OUT = "--out"
PROGRESS = "--no-progress"
#: The help of ``-o`` on every verb (a verb appends what its component is).
OPTION_HELP = "an option of {what}; VALUE is YAML; repeatable (e.g. {example})"


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: works as before and says once, on stderr, what
    replaces it (``htd train: warning: --output-dir is deprecated; use --out``)."""

    def __init__(self, option_strings, dest, *, replacement: str, **kwargs: Any) -> None:
        kwargs["help"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if not self.option_strings and values in (None, []):
            return  # a positional alias that was not given
        name = option_string or self.metavar or self.dest
        print(f"{parser.prog}: warning: {name} is deprecated; use {self.replacement}",
              file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_output_argument(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = True,
    old_options: tuple[str, ...] = (),
    old_positional: bool = False,
    default: str | None = None,
) -> None:
    """``--out PATH`` (dest ``out``) and the verb's old spellings as hidden aliases.

    Args:
        help: what is written there.
        required: ``--out`` must be given (checked after parsing when a positional alias
            exists, by :func:`finish_arguments`).
        old_options: former option spellings (``--output-dir``).
        old_positional: the verb used to take OUTPUT as its last positional argument.
        default: the value when ``--out`` is not given (with ``required=False``).
    """
    argparse_required = required and not old_positional
    text = help + (" (required)" if required and not argparse_required else "")
    parser.add_argument(OUT, required=argparse_required, default=default, metavar="PATH", help=text)
    for old in old_options:
        parser.add_argument(old, dest="out", action=DeprecatedAlias, replacement=OUT,
                            metavar="PATH", default=argparse.SUPPRESS)  # fmt: skip
    if old_positional:
        parser.add_argument("legacy_out", nargs="?", action=DeprecatedAlias, metavar="OUTPUT",
                            replacement=OUT, default=None)  # fmt: skip
        parser.set_defaults(_out_required=required)


def finish_arguments(args: argparse.Namespace, prog: str, extra: list[str] = ()) -> None:
    """After parsing: a positional OUTPUT (deprecated) becomes ``args.out``; a required
    ``--out`` that is missing is one error line. ``extra``: arguments the parser did not
    take; one plain word where the verb had a positional OUTPUT is that OUTPUT (argparse
    leaves an optional positional that follows options over).

    Raises:
        InputError: unrecognized arguments; ``--out`` is required and was given neither way,
            or both ways.
    """
    from htd_core.errors import InputError

    positional = "legacy_out" in vars(args)
    legacy = vars(args).pop("legacy_out", None)
    required = vars(args).pop("_out_required", False)
    late = positional and legacy is None and getattr(args, "out", None) is None
    if extra and late and len(extra) == 1 and not extra[0].startswith("-"):
        print(f"{prog}: warning: OUTPUT is deprecated; use {OUT}", file=sys.stderr)
        legacy, extra = extra[0], []
    if extra:
        raise InputError(f"unrecognized arguments: {' '.join(extra)}; see {prog} --help")
    if legacy is not None:
        if getattr(args, "out", None) not in (None, legacy):
            raise InputError(f"give the output once: --out {args.out} or OUTPUT {legacy}, not both")
        args.out = legacy
    if required and getattr(args, "out", None) is None:
        raise InputError(f"--out PATH is required (where {prog} writes); see {prog} --help")


def add_progress_argument(parser: argparse.ArgumentParser, *, old_quiet: bool = False) -> None:
    """``--no-progress`` (dest ``no_progress``); ``--quiet`` as a hidden alias if it existed."""
    parser.add_argument(PROGRESS, action="store_true", help="no progress bars")
    if old_quiet:
        parser.add_argument("--quiet", dest="no_progress", nargs=0, const=True,
                            action=DeprecatedAlias, replacement=PROGRESS)  # fmt: skip


def add_compute_arguments(
    parser: argparse.ArgumentParser, *, device_default: str | None = None, device_help: str = ""
) -> None:
    """``--threads N`` (:mod:`htd_core.threads`) and ``--device DEVICE``."""
    from htd_core.threads import add_threads_argument

    add_threads_argument(parser)
    default = f"default {device_default}" if device_default else "default: a GPU when present"
    parser.add_argument(
        "--device",
        default=device_default,
        help=f"torch device: cpu, cuda or cuda:N ({device_help or default})",
    )


def add_component_options(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``-o/--option KEY=VALUE`` (dest ``option``, a list of pairs)."""
    parser.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help=OPTION_HELP.format(what=what, example=example),
    )  # fmt: skip


def option_table(factory: Any) -> list[tuple[str, str, str]]:
    """(name, default, description) of each option a registered factory takes: the fields of
    its options dataclass (or of the class itself when it is a dataclass), else its keyword
    parameters; descriptions come from the ``Args:`` / ``Attributes:`` of its docstring."""
    import dataclasses
    import inspect

    from htd_core.options import options_class

    cls = options_class(factory) or (factory if dataclasses.is_dataclass(factory) else None)
    rows: list[tuple[str, Any]] = []
    if cls is not None:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            rows.append((f.name, "required" if missing else _default(f)))
    else:
        try:
            params = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):
            params = []
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                empty = p.default is inspect.Parameter.empty
                rows.append((p.name, "required" if empty else repr(p.default)))
    docs = {**_documented(factory), **(_documented(cls) if cls is not None else {})}
    return [(name, default, docs.get(name, "")) for name, default in rows]


def _default(f: Any) -> str:
    import dataclasses

    return repr(f.default) if f.default is not dataclasses.MISSING else repr(f.default_factory())


def _documented(obj: Any) -> dict[str, str]:
    """``name: text`` entries of the Google-style docstrings of ``obj`` and its bases
    (continuation lines joined, reST markup dropped)."""
    import re

    found: dict[str, str] = {}
    for klass in reversed(getattr(obj, "__mro__", (obj,))):
        current = None
        for line in (klass.__doc__ or "").expandtabs().splitlines():
            entry = re.match(r"^\s{4,8}(\w+)(?: \([^)]*\))?: (.*)$", line)
            if entry and entry.group(1) not in ("Args", "Attributes", "Raises", "Returns"):
                current = entry.group(1)
                found[current] = entry.group(2).strip()
            elif current and line.startswith(" " * 8) and line.strip():
                found[current] += " " + line.strip()
            else:
                current = None
    markup = re.compile(r"``(.*?)``|:\w+:`~?\.?(.*?)`")
    return {k: markup.sub(lambda m: m.group(1) or m.group(2), v) for k, v in found.items()}


def component_help(kind: str, name: str, label: str) -> str:
    """The options of registered component ``name`` of ``kind``, for a verb's ``--help``."""
    import textwrap

    from htd_core.errors import HtdError
    from htd_core.plugins import get_registry

    try:
        factory = get_registry(kind).entry(name).factory
    except HtdError as exc:
        return f"\n{label} {name!r}: {exc}\n"
    lines = [f"\noptions of {label} {name!r} (give them as -o KEY=VALUE):"]
    for option, default, doc in option_table(factory):
        lines.append(f"  {option} (default {default})" if default != "required" else
                     f"  {option} (required)")  # fmt: skip
        if doc:
            lines += textwrap.wrap(doc, 88, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines) + "\n"


def add_component_help(
    parser: argparse.ArgumentParser, kind: str, name_dest: str, label: str
) -> None:
    """Replace the verb's ``-h/--help`` by :class:`ComponentHelp`."""
    groups = (parser, parser._optionals)  # argparse keeps a conflict policy per group
    for group in groups:
        group.conflict_handler = "resolve"
    parser.add_argument("-h", "--help", action=ComponentHelp, kind=kind, name_dest=name_dest,
                        label=label)  # fmt: skip
    for group in groups:
        group.conflict_handler = "error"


class ComponentHelp(argparse.Action):
    """``-h/--help`` that, after the verb's own help, lists the options of the component named
    by the positional argument ``dest_of_name`` when it was given (``htd sample tiles --help``
    lists the tiles sampler's options)."""

    def __init__(self, option_strings, dest, *, kind: str, name_dest: str, label: str,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help=f"show this help (after {name_dest.upper()}: its options) and exit")  # fmt: skip
        self.kind, self.name_dest, self.label = kind, name_dest, label

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.print_help()
        name = getattr(namespace, self.name_dest, None)
        if name:
            print(component_help(self.kind, name, self.label))
        parser.exit()
