"""``htd demo``: train the method and its unconditional baseline on real tissue and score them.

Offline, no arguments needed: it uses the shared data folder when present, else the H&E image
inside the tiatoolbox wheel (or ``--slide``). Runs the experiment runner
(:mod:`htd_plugins.experiment`) with the ``demo`` budget: about 12 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse

from htd_core import hookimpl
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd demo``."""
    from htd_core.options import int_at_least

    p.add_argument(
        "--output-dir", default="htd-output/demo", help="where outputs go (default htd-output/demo)"
    )
    p.add_argument("--slide", help="a slide or H&E image to use instead of the shared data")
    p.add_argument(
        "--data-dir", help="shared data folder (default: HTD_SHARED_DATA or ../shared/data)"
    )
    p.add_argument(
        "--budget", default="demo",
        help="experiment budget preset (default demo; tiny for a smoke test, cpu-quick ~30 min)",
    )  # fmt: skip
    add_threads_argument(p)
    p.add_argument("--seed", type=int_at_least(0), default=0)


def run(args: argparse.Namespace) -> int:
    import sys

    from htd_core.threads import configure_threads, report
    from htd_plugins.demo import DemoOptions, run_demo

    print(report("demo", configure_threads(args.threads, workload="small")), file=sys.stderr)
    opts = DemoOptions(output_dir=args.output_dir, slide=args.slide, data_dir=args.data_dir,
                       budget=args.budget, seed=args.seed)  # fmt: skip
    results = run_demo(opts)
    text = open(results["paths"]["results_md"]).read()
    print(text.split("## The paper's orderings")[0].rstrip())
    for name, path in results["paths"].items():
        print(f"{name}: {path}")
    sets = [
        f"{args.output_dir}/arms/{a}/seed-{args.seed}/synthetic" for a in ("crop", "unconditional")
    ]
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
