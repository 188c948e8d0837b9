"""``htd train CONFIG``: train the backbone of a pipeline file on its sampler's patches.

The YAML names a ``sampler``, ``condition_builders`` and a ``backbone``; its ``fit`` section holds
the training options (``steps``, ``batch_size``, ``learning_rate``, ``checkpoint_every``...,
see docs/backbones.md). Checkpoints, TensorBoard logs and the final model go to the output
folder; rerunning the same command after an interruption resumes from the last checkpoint.
The model folder is a saved pipeline (``Pipeline.save_pretrained``: the backbone's parts plus
``pipeline.yaml`` naming its condition builders), which ``htd generate`` and
``Pipeline.from_pretrained`` read. On several GPUs: ``accelerate launch $(which htd) train CONFIG``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from htd_core import hookimpl
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd train``."""
    from htd_core.options import int_at_least, number_at_least

    p.add_argument(
        "config", help="pipeline YAML with sampler, condition_builders, backbone and fit"
    )
    p.add_argument(
        "--output-dir", help="run folder (default: fit.output_dir, else runs/<config name>)"
    )
    p.add_argument(
        "--steps", type=int_at_least(1), help="total optimizer steps (overrides fit.steps)"
    )
    p.add_argument(
        "--max-minutes",
        type=number_at_least(0, above=True),
        help="wall-time bound of the whole fit (autoencoder included: 20 %% of it unless "
        "fit.vae_max_minutes); stops, checkpoints and saves the model",
    )
    p.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="fit option; VALUE is YAML (e.g. -o batch_size=8 -o cache_latents=true)",
    )  # fmt: skip
    p.add_argument(
        "--data",
        help="train on this dataset folder (`htd sample` output, or image + mask tiles) with "
        "the tiles sampler, instead of the config's sampler",
    )
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    add_threads_argument(p)


def run(args: argparse.Namespace) -> int:

    from htd_core.config import load_config, parse_options
    from htd_core.errors import ConfigError
    from htd_core.outputs import check_output
    from htd_core.pipeline import RUN_KIND, Pipeline
    from htd_core.threads import configure_threads, report

    data, label = load_config(args.config)
    if args.data:  # an htd dataset brings its own classes.json and manifest (tiles sampler)
        data["sampler"] = {"name": "tiles", "root": args.data}
    for section in ("sampler", "backbone"):
        if not data.get(section):
            raise ConfigError(f"{label}: `htd train` needs a {section!r} section")
    options = {**data.get("fit", {}), **parse_options(args.option, None)}
    if args.steps is not None:
        options["steps"] = args.steps
    if args.max_minutes is not None:
        options["max_minutes"] = args.max_minutes
    output = Path(
        args.output_dir or options.get("output_dir") or Path("runs") / Path(args.config).stem
    )
    options["output_dir"] = str(output)
    check_output(output, RUN_KIND, what="--output-dir", legacy=("checkpoints",))  # before work
    if args.no_resume:
        if (output / "checkpoints").is_dir() and any((output / "checkpoints").iterdir()):
            raise ConfigError(
                f"{output} already holds checkpoints and --no-resume was given: choose another --output-dir"
            )
        options["resume"] = False
    pipeline = Pipeline.from_config(data) if args.data else Pipeline.from_config(args.config)
    backbone = getattr(pipeline.backbone, "options", {}) or {}
    workload = "large" if backbone.get("preset") == "paper" else "small"
    choice = configure_threads(args.threads, workload=workload, device=backbone.get("device"))
    print(report("train", choice), file=sys.stderr)
    summary = pipeline.fit(**options)
    model_dir = Path(summary.get("model_dir", output / "model"))
    print(json.dumps({k: v for k, v in summary.items() if k != "vae"}, indent=2, default=str))
    print(f"model: {model_dir}")
    print(f"logs:  tensorboard --logdir {output / 'logs'}")
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="train a backbone from a pipeline YAML (resumable)",
        description="Train the pipeline's backbone on its sampler's patches with the pipeline's condition builders. Rerun the same command to resume. Options: docs/backbones.md.",
        order=50,
    )
    registry.register("train", command)
