"""``htd experiment CONFIG``: the paper's tables, reproduced end to end on real data.

Trains one shared autoencoder and one model per arm (crop, embedding, unconditional, ...)
with the same budget and seed, generates from the same training layouts, scores every arm
against the held-out real patches (Frechet distance and KID, DeepLabv3+ IoU, privacy audit)
and writes ``results.md``, ``results.json`` and ``figure.png``. Rerun the same command after
an interruption: finished stages are reused, a killed training continues from its last
checkpoint. The logic lives in :mod:`htd_plugins.experiment`; docs/results.md has the tables.
"""

from __future__ import annotations

import argparse

from htd_core import hookimpl
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd experiment``."""
    p.add_argument("config", help="experiment YAML (examples/experiments/glas.yaml)")
    p.add_argument(
        "--budget",
        help="budget preset overriding the file's: tiny, demo, cpu-quick (~30 min on 2 CPU "
        "cores), cpu (~1.5 h), gpu (the paper preset at 256 px)",
    )
    p.add_argument(
        "--output-dir", help="output folder (default: the file's output_dir, else "
        "htd-output/experiments/<name>-<budget>)",
    )  # fmt: skip
    p.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="override a key of the file (YAML value), repeatable: -o arms=[crop,unconditional] "
        "-o budget_options.steps=200 -o evaluators=[frechet]",
    )  # fmt: skip
    add_threads_argument(p)


def run(args: argparse.Namespace) -> int:
    import sys

    from htd_core.config import parse_options
    from htd_core.threads import configure_threads, report
    from htd_plugins.experiment import Experiment, load_experiment

    config = load_experiment(args.config, parse_options(args.option, None))
    exp = Experiment(
        config, budget=args.budget, output_dir=args.output_dir
    )  # validates before any work
    workload = "large" if exp.budget.preset == "paper" else "small"
    print(report("experiment", configure_threads(args.threads, workload=workload)), file=sys.stderr)
    results = exp.run()
    print((exp.out / "results.md").read_text())
    for name, path in results["paths"].items():
        print(f"{name}: {path}")
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="reproduce the paper's tables on real data (all arms, resumable)",
        description=(
            "Train a shared autoencoder and one model per arm (crop, embedding, unconditional) "
            "on the train split of a real dataset, generate from the same training layouts, "
            "score against the held-out split (FD/KID, DeepLabv3+ IoU, privacy) and write "
            "results.md, results.json and figure.png (docs/results.md)."
        ),
        order=75,
    )
    registry.register("experiment", command)
