"""``htd demo``: train a small dual-conditioned model on real tissue and show what it makes.

Offline, no arguments needed: it uses the shared data folder when present, else the H&E image
inside the tiatoolbox wheel (or ``--slide``). About 12 minutes on 2 CPU cores; the logic lives
in :mod:`htd_plugins.demo`.
"""

from __future__ import annotations

import argparse

from htd_core import hookimpl
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd demo``."""
    p.add_argument(
        "--output-dir", default="htd-output/demo", help="where outputs go (default htd-output/demo)"
    )
    p.add_argument("--slide", help="a slide or H&E image to use instead of the shared data")
    p.add_argument(
        "--data-dir", help="shared data folder (default: HTD_SHARED_DATA or ../shared/data)"
    )
    p.add_argument(
        "--train-minutes", type=float, default=7.0, help="diffusion training wall time (default 7)"
    )
    p.add_argument(
        "--vae-minutes", type=float, default=2.0, help="autoencoder training wall time (default 2)"
    )
    p.add_argument("--num-eval", type=int, default=64, help="held-out layouts generated and scored")
    add_threads_argument(p)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from htd_plugins.demo import DemoOptions, run_demo
    from htd_plugins.demo.report import score_lines

    opts = DemoOptions(
        output_dir=args.output_dir, slide=args.slide, data_dir=args.data_dir,
        vae_minutes=args.vae_minutes, train_minutes=args.train_minutes, num_eval=args.num_eval,
        seed=args.seed, threads=args.threads,
    )  # fmt: skip
    result = run_demo(opts)
    scores = result["scores"]
    print(f"\nFD against {scores['n_real']} held-out real patches (lower is closer):")
    for line in score_lines(scores):
        print(f"  {line}")
    print(f"\nfigure:   {result['figure']}")
    print(f"model:    {result['model']}")
    print(
        f"datasets: {args.output_dir}/synthetic_conditioned, {args.output_dir}/synthetic_unconditional"
    )
    print(f"summary:  {args.output_dir}/summary.json  ({result['wall_minutes']} minutes)")
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="train, generate and score on real tissue in minutes (offline)",
        description="Sample heterogeneous real patches, train the small controlnet_ldm for a bounded time, generate from held-out real masks with real crops, and write a figure and Frechet distances (crop-conditioned vs unconditional).",
        order=80,
    )
    registry.register("demo", command)
