"""``htd plugins``: list plugins, what they register, and whether they loaded."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list installed plugins and their status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


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
