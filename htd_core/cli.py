"""The ``htd`` command line: one verb per stage.

Each verb lives in ``htd_core.commands.<verb>`` with ``add_parser(subparsers)`` that sets
``func``; verbs import their heavy dependencies only when run. User errors (``HtdError``)
print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from htd_core.errors import HtdError

#: Verb modules in help order; a module absent from this install is skipped.
COMMANDS = ("plugins", "sample", "discover", "train_vae", "train", "generate", "evaluate", "demo")


def build_parser() -> argparse.ArgumentParser:
    from htd_core import __version__

    parser = argparse.ArgumentParser(
        prog="htd",
        description="HeteroTissue-Diffuse: synthesize heterogeneous H&E tissue with "
        "dual-conditioned diffusion (semantic map + real crops).",
    )
    parser.add_argument("--version", action="version", version=f"htd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in COMMANDS:
        try:
            module = importlib.import_module(f"htd_core.commands.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"htd_core.commands.{verb}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except HtdError as exc:
        print(f"htd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"htd {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
