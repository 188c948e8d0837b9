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
from typing import Any

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd train``."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least, number_at_least

    p.add_argument(
        "config", help="pipeline YAML with sampler, condition_builders, backbone and fit"
    )
    co.add_output_argument(
        p, "run folder (default: fit.output_dir, else runs/<config name>)", required=False,
        old_options=("--output-dir",),
    )  # fmt: skip
    p.add_argument("--preset", help="the backbone's size: tiny, small or paper (= -o preset=NAME)")
    p.add_argument(
        "--steps", type=int_at_least(1), help="total optimizer steps (overrides fit.steps)"
    )
    p.add_argument(
        "--max-minutes",
        type=number_at_least(0, above=True),
        help="wall-time bound of the whole fit (autoencoder included: 20 %% of it unless "
        "fit.vae_max_minutes); stops, checkpoints and saves the model",
    )
    co.add_component_options(
        p, "the backbone (bare KEY or backbone.KEY), of its training (fit.KEY, or a bare KEY "
        "the backbone does not take) or of the sampler (sampler.KEY)",
        "-o preset=tiny -o batch_size=8 -o fit.cache_latents=true",
    )  # fmt: skip
    p.add_argument(
        "--data",
        help="train on this dataset folder instead of the config's sampler: `htd sample` "
        "output or image + mask tiles (read with the tiles sampler), or shards (`htd sample "
        "--shard-size`: streamed, each process of `accelerate launch` reading its own)",
    )
    p.add_argument(
        "--skip-bad-shards",
        action="store_true",
        help="with --data SHARDS: leave out a missing or truncated shard with a warning "
        "instead of stopping",
    )
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    co.add_compute_arguments(p, device_help="default: the backbone's device option, auto")
    co.add_progress_argument(p)


def apply_options(
    data: dict[str, Any], args: argparse.Namespace, label: str
) -> tuple[dict[str, Any], list[str]]:
    """The pipeline mapping with the command line's options applied, and the fit options.

    ``-o backbone.KEY`` / ``sampler.KEY`` / ``fit.KEY`` set an option of that section; a bare
    KEY goes to the backbone when it takes it, else to ``fit`` (whose options are checked
    where the fit starts). ``--preset`` and ``--device`` are backbone options, ``--steps``,
    ``--max-minutes`` and ``--no-progress`` fit options. A ``fit.vae_max_minutes`` of the file
    that leaves nothing of a smaller ``--max-minutes`` is dropped (the autoencoder then gets
    its default share), with a note.

    Returns:
        (fit options, notes to print).

    Raises:
        ConfigError: an unknown section prefix, or a section that is not a mapping.
    """
    from htd_core.config import ComponentSpec, parse_options
    from htd_core.errors import ConfigError
    from htd_core.plugins import get_registry
    from htd_core.registry import accepted_options

    notes: list[str] = []
    sections: dict[str, dict[str, Any]] = {"backbone": {}, "sampler": {}, "fit": {}}
    backbone = ComponentSpec.parse(data["backbone"], f"{label}: backbone")
    accepted = accepted_options(get_registry("backbones").entry(backbone.name).factory)
    for key, value in parse_options(args.option, None).items():
        part, dot, name = key.partition(".")
        if not dot:
            part, name = ("backbone" if accepted is None or key in accepted else "fit"), key
        if part not in sections:
            raise ConfigError(
                f"-o {key}=...: write KEY, backbone.KEY, fit.KEY or sampler.KEY ({part!r} is "
                "not a section htd train sets)"
            )
        sections[part][name] = value
    if args.preset is not None:
        sections["backbone"]["preset"] = args.preset
    if args.device is not None:
        sections["backbone"]["device"] = args.device
    data["backbone"] = {**backbone.to_config(), **sections["backbone"]}
    if sections["sampler"]:
        sampler = ComponentSpec.parse(data["sampler"], f"{label}: sampler")
        data["sampler"] = {**sampler.to_config(), **sections["sampler"]}
    file_fit = dict(data.get("fit") or {})
    options = {**file_fit, **sections["fit"]}
    if args.steps is not None:
        options["steps"] = args.steps
    if args.max_minutes is not None:
        options["max_minutes"] = args.max_minutes
        vae = file_fit.get("vae_max_minutes")
        if "vae_max_minutes" not in sections["fit"] and vae and vae >= args.max_minutes:
            del options["vae_max_minutes"]
            notes.append(
                f"fit.vae_max_minutes {vae:g} of {label} leaves nothing of --max-minutes "
                f"{args.max_minutes:g}: the autoencoder gets its default share (20 %) instead"
            )
    if args.no_progress:
        options["progress"] = False
    return options, notes


def run(args: argparse.Namespace) -> int:
    from htd_core.config import load_config
    from htd_core.errors import ConfigError
    from htd_core.outputs import check_output
    from htd_core.pipeline import RUN_KIND, Pipeline
    from htd_core.shards import ShardDataset, is_shard_folder
    from htd_core.threads import check_device, configure_threads, report

    check_device(args.device)
    data, label = load_config(args.config)
    samples = None
    if args.data and Path(args.data).is_file():
        raise ConfigError(
            f"--data {args.data} is a file: give the folder that holds it (a dataset folder of "
            "`htd sample`, or a shard folder with shards.json)"
        )
    if args.data and not is_shard_folder(args.data) and any(Path(args.data).glob("*.tar")):
        raise ConfigError(
            f"--data {args.data} holds .tar files but no shards.json (the shard index): write the "
            "shards with `htd sample ... --shard-size N`, which writes the index beside them"
        )
    if args.data and is_shard_folder(args.data):  # streamed; its index checked before work
        samples = ShardDataset(args.data, skip_bad=args.skip_bad_shards)
        data.pop("sampler", None)
    elif args.skip_bad_shards:
        raise ConfigError("--skip-bad-shards applies to --data SHARDS (a folder with shards.json)")
    elif args.data:  # an htd dataset brings its own classes.json and manifest (tiles sampler)
        data["sampler"] = {"name": "tiles", "root": args.data}
    for section in ("sampler", "backbone")[samples is not None :]:
        if not data.get(section):
            raise ConfigError(f"{label}: `htd train` needs a {section!r} section")
    options, notes = apply_options(data, args, label)
    for note in notes:
        print(f"htd train: note: {note}", file=sys.stderr)
    output = Path(args.out or options.get("output_dir") or Path("runs") / Path(args.config).stem)
    options["output_dir"] = str(output)
    check_output(output, RUN_KIND, what="--out", legacy=("checkpoints",))  # before work
    if args.no_resume:
        if (output / "checkpoints").is_dir() and any((output / "checkpoints").iterdir()):
            raise ConfigError(
                f"{output} already holds checkpoints and --no-resume was given: choose another --out"
            )
        options["resume"] = False
    data.pop("fit", None)  # the fit options travel whole as fit(**options)
    pipeline = Pipeline.from_config(data)  # its paths are resolved against the file already
    backbone = getattr(pipeline.backbone, "options", {}) or {}
    workload = "large" if backbone.get("preset") == "paper" else "small"
    choice = configure_threads(args.threads, workload=workload, device=backbone.get("device"))
    print(report("train", choice), file=sys.stderr)
    summary = pipeline.fit(samples, **options)
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
