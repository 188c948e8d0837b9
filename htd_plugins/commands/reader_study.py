"""``htd reader-study``: a blinded real-vs-synthetic reader study (create, serve, report).

The logic lives in :mod:`htd_plugins.reader_study`; this module only parses arguments. Flask,
scipy and matplotlib are imported when a stage runs, not when ``htd --help`` is built.
"""

from __future__ import annotations

import argparse
import sys

from htd_core import hookimpl
from htd_core.errors import InputError
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Sub-commands ``create``, ``serve`` and ``report`` of ``htd reader-study``."""
    from htd_core.options import int_at_least

    stages = p.add_subparsers(dest="stage", metavar="STAGE")
    c = stages.add_parser(
        "create",
        help="sample real and synthetic images into a new blinded study folder",
        description="Draw a balanced, seeded sample (half real, half synthetic), copy the "
        "images under random ids without metadata, and keep the answer key in the study "
        "database. A folder with an images/ subfolder (htd dataset) uses images/.",
    )
    c.add_argument("--real", required=True, metavar="DIR", help="folder of real images")
    c.add_argument("--synthetic", action="append", default=[], metavar="DIR",
                   help="folder of synthetic images (set name: synthetic); repeatable")  # fmt: skip
    c.add_argument("--synthetic-name", action="append", nargs=2, default=[],
                   metavar=("NAME", "DIR"), help="a named synthetic set; repeatable")  # fmt: skip
    c.add_argument(
        "--n", type=int_at_least(2), default=120, help="images in the study, even (default 120)"
    )
    c.add_argument(
        "--seed", type=int_at_least(0), default=0, help="seed of the sample and reading orders"
    )
    c.add_argument("--out", required=True, metavar="STUDY", help="new study folder to create")
    c.set_defaults(stage_func=run_create)
    s = stages.add_parser(
        "serve",
        help="serve the study to readers in the browser",
        description="Serve the reading page. Localhost only by default; any other --host "
        "requires the study token, which this command prints.",
    )
    s.add_argument("study", metavar="STUDY", help="study folder made by create")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument(
        "--port",
        type=int_at_least(0, 65535),
        default=8765,
        help="port (default 8765; 0 = any free)",
    )
    s.add_argument("--require-token", action="store_true",
                   help="ask readers for the study token on localhost too")  # fmt: skip
    s.set_defaults(stage_func=run_serve)
    r = stages.add_parser(
        "report",
        help="write report.md, report.json and report.png into STUDY/report",
        description="Accuracy with exact 95% intervals, binomial test vs 50%, sensitivity, "
        "specificity, quality scores (Mann-Whitney U) and Fleiss' kappa.",
    )
    r.add_argument("study", metavar="STUDY", help="study folder made by create")
    r.set_defaults(stage_func=run_report)


def run_create(args: argparse.Namespace) -> int:
    from htd_plugins.reader_study.sampling import ImageSet, create_study, image_folder

    sets = [ImageSet("real", "real", image_folder(args.real, "--real"))]
    named = [("synthetic", d) for d in args.synthetic] + [tuple(x) for x in args.synthetic_name]
    if not named:
        raise InputError(
            "no synthetic images given: add --synthetic DIR or --synthetic-name NAME DIR"
        )
    for name, folder in named:
        option = "--synthetic" if name == "synthetic" else f"--synthetic-name {name}"
        sets.append(ImageSet(name, "synthetic", image_folder(folder, option)))
    info = create_study(args.out, sets, args.n, args.seed)
    counts = ", ".join(f"{k} {v}" for k, v in info["sets"].items())
    print(f"created reader study {info['out']}: {info['n']} images ({counts})")
    sizes = info["sizes"]
    if len({tuple(map(tuple, v)) for v in sizes.values()}) > 1:
        desc = "; ".join(f"{k}: " + ", ".join(f"{w}x{h}" for w, h in v) for k, v in sizes.items())
        print(f"warning: real and synthetic images differ in size ({desc}); readers may tell "
              "them apart by size alone: resize them to one size first", file=sys.stderr)  # fmt: skip
    print(f"next: htd reader-study serve {info['out']}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from htd_plugins.reader_study.server import make_server

    server, study, need_token = make_server(args.study, args.host, args.port, args.require_token)
    bare = args.host.strip("[]")
    host = f"[{bare}]" if ":" in bare else bare
    print(f"serving reader study {study.root} at http://{host}:{server.port}/", flush=True)
    if bare in ("0.0.0.0", "::"):
        print(f"readers on the network open http://<this machine's address>:{server.port}/ "
              "(find it with: hostname -I)", flush=True)  # fmt: skip
    if need_token:
        print(f"study token (readers enter it once): {study.token}", flush=True)
    print("answers are saved as they come; Ctrl+C stops the server", flush=True)
    try:
        server.serve_forever()  # returns on Ctrl+C (werkzeug catches KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("server stopped; every answer given is saved", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from htd_plugins.reader_study.db import open_study
    from htd_plugins.reader_study.report import write_report

    paths = write_report(open_study(args.study))
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen stage."""
    func = getattr(args, "stage_func", None)
    if func is None:
        raise InputError("give a stage: htd reader-study {create,serve,report} --help")
    return func(args)


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="blinded real-vs-synthetic reader study: create, serve in the browser, report",
        description=(
            "Pathologists rate real vs synthetic H&E images in the browser; statistics come out. "
            "Stages: create (sample a study), serve (the reading page), report (statistics)."
        ),
        order=90,
    )
    registry.register("reader-study", command)
