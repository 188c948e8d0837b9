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
from pathlib import Path

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd train``."""
    p.add_argument(
        "config", help="pipeline YAML with sampler, condition_builders, backbone and fit"
    )
    p.add_argument(
        "--output-dir", help="run folder (default: fit.output_dir, else runs/<config name>)"
    )
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides fit.steps)")
    p.add_argument("--max-minutes", type=float, help="stop and save after this wall time")
    p.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="fit option; VALUE is YAML (e.g. -o batch_size=8 -o cache_latents=true)",
    )  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")


def run(args: argparse.Namespace) -> int:

    from htd_core.config import load_config, parse_options
    from htd_core.errors import ConfigError
    from htd_core.pipeline import Pipeline

    data, label = load_config(args.config)
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
    if args.no_resume:
        if (output / "checkpoints").is_dir() and any((output / "checkpoints").iterdir()):
            raise ConfigError(
                f"{output} already holds checkpoints and --no-resume was given: choose another --output-dir"
            )
        options["resume"] = False
    pipeline = Pipeline.from_config(args.config)
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
