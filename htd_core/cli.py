"""The ``htd`` command line, built from the verbs plugins register.

The core holds no verb: every ``htd <verb>`` is a :class:`htd_core.Command` registered through
the ``htd_register_commands`` hook (the built-in verbs live in ``htd_plugins.commands``), so a
pip-installed plugin adds a verb without editing a shared file. User errors (``HtdError``)
print one line on stderr and exit 2, never a traceback (a full disk too: the output folder and
the space free there); warnings print as one line too. The
output locks a command took (:mod:`htd_core.locks`) are released when it ends.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Sequence

from htd_core.errors import HtdError


class OneLineParser(argparse.ArgumentParser):
    """argparse with htd's error style: a bad option or value is one line on stderr naming the
    option, the value and the fix (``htd train-vae: error: argument --batch-size: 0 must be an
    integer >= 1; see htd train-vae --help``), exit 2; no usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-parser per registered command (ordered by ``Command.order``)."""
    from htd_core import __version__
    from htd_core.plugins import get_plugin_manager

    parser = OneLineParser(
        prog="htd",
        description="HeteroTissue-Diffuse: synthesize heterogeneous H&E tissue with "
        "dual-conditioned diffusion (semantic map + real crops).",
    )
    parser.add_argument("--version", action="version", version=f"htd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registry = get_plugin_manager().commands
    commands = [(registry.create(name), name) for name in registry.names()]
    for command, name in sorted(commands, key=lambda c: (c[0].order, c[1])):
        p = sub.add_parser(name, help=command.help, description=command.description or command.help)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``htd`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "func", None):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    previous = warnings.formatwarning
    warnings.formatwarning = functools.partial(_one_line_warning, args.command)
    try:
        from htd_core.cli_options import finish_arguments

        finish_arguments(args, f"htd {args.command}", extra)
        return int(args.func(args) or 0)
    except HtdError as exc:
        print(f"htd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk met outside htd's own writers (a library's file)
        from htd_core.io import DISK_FULL, disk_full
        from htd_core.locks import held_outputs

        if exc.errno not in DISK_FULL:
            raise
        where = exc.filename or next(iter(held_outputs()), None) or "."
        print(f"htd {args.command}: error: {disk_full(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"htd {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous
        from htd_core.outputs import release_outputs

        release_outputs()  # the command's output locks (the kernel drops them at exit anyway)


def _one_line_warning(command: str, message, category, filename, lineno, line=None) -> str:
    """A warning as ``htd VERB: warning: <first line>``: no source file, line or code."""
    lines = str(message).strip().splitlines()
    return f"htd {command}: warning: {lines[0] if lines else category.__name__}\n"


if __name__ == "__main__":
    sys.exit(main())
