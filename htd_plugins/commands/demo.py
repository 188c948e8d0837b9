"""``htd demo``: train the method and its unconditional baseline on real tissue and score them.

Offline, no arguments needed: it uses the shared data folder when present, else the H&E image
inside the tiatoolbox wheel (or ``--slide``). Runs the experiment runner
(:mod:`htd_plugins.experiment`) with the ``demo`` budget: about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd demo``."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least

    co.add_output_argument(
        p, "where outputs go (default htd-output/demo)", required=False,
        old_options=("--output-dir",), default="htd-output/demo",
    )  # fmt: skip
    p.add_argument("--slide", help="a slide or H&E image to use instead of the shared data")
    p.add_argument(
        "--data-dir", help="shared data folder (default: HTD_SHARED_DATA or ../shared/data)"
    )
    p.add_argument(
        "--budget", default="demo",
        help="experiment budget preset (default demo; tiny for a smoke test, cpu-quick ~30 min)",
    )  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0), default=0)
    co.add_compute_arguments(p, device_help="models and evaluators; default: a GPU when present")
    co.add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    import sys

    from htd_core.threads import check_device, configure_threads, report
    from htd_plugins.demo import DemoOptions, run_demo

    check_device(args.device)
    choice = configure_threads(args.threads, workload="small", device=args.device)
    print(report("demo", choice), file=sys.stderr)
    opts = DemoOptions(output_dir=args.out, slide=args.slide, data_dir=args.data_dir,
                       budget=args.budget, seed=args.seed, device=args.device,
                       progress=not args.no_progress)  # fmt: skip
    results = run_demo(opts)
    text = open(results["paths"]["results_md"]).read()
    print(text.split("## The paper's orderings")[0].rstrip())
    for name, path in results["paths"].items():
        print(f"{name}: {path}")
    sets = [f"{args.out}/arms/{a}/seed-{args.seed}/synthetic" for a in ("crop", "unconditional")]
    print(f"datasets: {', '.join(sets)}")
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="train, generate and score on real tissue in minutes (offline)",
        description="Sample heterogeneous real patches, train a shared autoencoder, the crop-conditioned model and a separately trained unconditional model (the demo budget of `htd experiment`), generate from the same training layouts, and write results.md with Frechet distances and a figure.",
        order=80,
    )
    registry.register("demo", command)
