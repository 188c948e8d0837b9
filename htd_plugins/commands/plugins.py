"""``htd plugins``: list plugins, what they register, and whether they loaded."""

from __future__ import annotations

import argparse
import json

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd plugins``."""
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from htd_core.plugins import get_plugin_manager

    infos = get_plugin_manager().plugin_infos()
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    rows = [("PLUGIN", "KIND", "COMPONENTS", "DISTRIBUTION", "STATUS")]
    for i in infos:
        kinds = sorted({k for k, _ in i.components}) or ["-"]
        names = ", ".join(n for _, n in i.components) or "-"
        dist = f"{i.distribution} {i.version}".strip() or "-"
        status = i.status if not i.error else f"{i.status}: {i.error}"
        rows.append((i.name, ", ".join(kinds), names, dist, status))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="list installed plugins and their status",
        order=10,
    )
    registry.register("plugins", command)
