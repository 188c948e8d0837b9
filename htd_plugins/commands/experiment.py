"""``htd experiment CONFIG``: the paper's tables, reproduced end to end on real data.

Trains one shared autoencoder and one model per arm and seed (unconditional, semantic_map,
embedding, crop, ...) with the same budget, generates from the same training layouts, scores
every arm against the held-out real patches (Frechet distance and KID, DeepLabv3+ IoU, layout
adherence, privacy audit; each score as mean [95 % interval] over seeds and resamples)
and writes ``results.md``, ``results.json`` and ``figure.png``. Rerun the same command after
an interruption: finished stages are reused, a killed training continues from its last
checkpoint. The logic lives in :mod:`htd_plugins.experiment`; docs/results.md has the tables.
"""

from __future__ import annotations

import argparse

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd experiment``."""
    from htd_core import cli_options as co

    p.add_argument("config", help="experiment YAML (examples/experiments/glas.yaml)")
    p.add_argument(
        "--budget",
        help="budget preset overriding the file's: tiny (a smoke test), demo, cpu-quick (800 "
        "steps per arm), cpu (1200; the example files' 4 arms x 2 seeds took 1.8-2.8 h per "
        "dataset on 2 CPU cores, docs/results.md), gpu (the paper preset at the data's native "
        "patch size)",
    )
    co.add_output_argument(
        p, "output folder (default: the file's output_dir, else "
        "htd-output/experiments/<name>-<budget>)", required=False, old_options=("--output-dir",),
    )  # fmt: skip
    co.add_component_options(
        p,
        "the experiment: a key of its file (SECTION.KEY for one entry of a section)",
        "-o arms=[crop,unconditional] -o budget_options.steps=200",
    )
    co.add_compute_arguments(p, device_help="models and evaluators; default: a GPU when present")
    co.add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    import sys

    from htd_core.config import parse_options
    from htd_core.threads import check_device, configure_threads, report
    from htd_plugins.experiment import Experiment, load_experiment

    check_device(args.device)
    overrides = parse_options(args.option, None)
    if args.device:  # the models' device and the evaluators' (not part of any stage key)
        overrides["model.device"] = args.device
    if args.no_progress:
        overrides["fit.progress"] = False
    config = load_experiment(args.config, overrides)
    exp = Experiment(config, budget=args.budget, output_dir=args.out)  # validates before any work
    workload = "large" if exp.budget.preset == "paper" else "small"
    choice = configure_threads(args.threads, workload=workload, device=args.device)
    print(report("experiment", choice), file=sys.stderr)
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
            "Train a shared autoencoder and one model per arm and seed (unconditional, "
            "semantic_map, embedding, crop) on the train split of a real dataset, generate from "
            "the same training layouts, score against the held-out split (FD/KID, DeepLabv3+ "
            "IoU, layout adherence, privacy; mean [95 % interval] over seeds) and write "
            "results.md, results.json and figure.png (docs/results.md)."
        ),
        order=75,
    )
    registry.register("experiment", command)
