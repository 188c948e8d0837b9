"""``htd generate MODEL --out OUTPUT``: synthesize a dataset from semantic maps (and real crops).

Layouts come from a dataset (real masks; crops are cut from its real images) or from a folder
of masks (index PNGs, or RGB PNGs painted in the class colours; crops then come from a crop
bank). The output has the layout of ``htd sample`` (images/, masks/, manifest.csv,
classes.json) with extra manifest columns: the layout it came from, its seed, the crops'
provenance (source slide id and location per class) and the opaque source ids of the layout
and of the crops. Resumable: rerun the same command to continue; ``generate.json`` refuses a
resume with other options or with another model (it records the model's content hash, so a
retrained model in the same folder is another model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.generation import GENERATION_COLUMNS
from htd_core.interfaces.command import make_command

SETTINGS = "generate.json"
KIND = "generate"  # output kind (htd_core.outputs): OUTPUT must be new, empty or one of these
#: Manifest columns beyond ``htd sample``'s: the layout, and what ``Pipeline.iter_generate``
#: records of each sample (its seed, guidance, scheduler and steps as used, where the crops
#: came from, and the opaque source ids of the layout and the crops, which ``htd evaluate``
#: checks against held-out images).
EXTRA_COLUMNS = ("layout", *GENERATION_COLUMNS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd generate``."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least, number_at_least

    p.add_argument("model", help="saved pipeline folder (`htd train`'s model/)")
    co.add_output_argument(p, "synthetic dataset folder (created or resumed)", old_positional=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--dataset", help="dataset folder whose masks (and images, for crops) are the layouts"
    )
    src.add_argument("--masks", help="folder of mask PNGs (class indices or class colours)")
    p.add_argument(
        "--crop-bank", help="crop bank file for layouts without images (see the crop builder)"
    )
    p.add_argument(
        "--config",
        help="pipeline YAML whose condition_builders to use (default: MODEL/pipeline.yaml)",
    )
    p.add_argument(
        "--unconditional",
        action="store_true",
        help="ignore the layouts' conditions (null condition)",
    )
    p.add_argument(
        "--scheduler",
        help="sampler, e.g. ddim or dpmsolver++ (default: the model folder's generate: "
        "defaults, else ddim)",
    )
    p.add_argument(
        "--steps", type=int_at_least(1), help="sampling steps (default: the model's, else 25)"
    )
    p.add_argument(
        "--guidance",
        type=number_at_least(1),
        help="classifier-free guidance scale, 1: none (default: the model's, else 2)",
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        help="layouts per batch (default: the model's, else 16)",
    )
    p.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="layout i uses seed + i (noise and crop choice)",
    )
    p.add_argument("--limit", type=int_at_least(1), help="generate for at most this many layouts")
    co.add_compute_arguments(p, device_help="default: the model's device option, auto")
    co.add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    import json

    from tqdm.auto import tqdm

    from htd_core.dataset import DatasetWriter, disk_full_estimate, holds_samples
    from htd_core.errors import InputError
    from htd_core.generation import check_layouts
    from htd_core.io import atomic_write_json
    from htd_core.outputs import check_output, output_folder
    from htd_core.pipeline import Pipeline
    from htd_core.pipeline_files import pipeline_id
    from htd_core.threads import check_device, configure_threads, report
    from htd_plugins.commands.layouts import (
        bank_files,
        crop_flag_error,
        files_key,
        layout_files,
        layout_names,
        read_layouts,
        relative_to,
    )
    from htd_plugins.commands.sheets import CONTACT_SHEET, generation_sheet

    check_device(args.device)
    model, output = Path(args.model), Path(args.out)
    check_output(output, KIND, what="--out", legacy=(SETTINGS,))  # before loading the model
    source = f"--dataset {args.dataset}" if args.dataset else f"--masks {args.masks}"
    try:
        pipe = Pipeline.from_pretrained(
            model,
            condition_builders=_builders_of(args.config),
            builder_options={"bank": args.crop_bank} if args.crop_bank else None,
            device=args.device,
        )
    except InputError as exc:
        raise crop_flag_error(exc, source, args.crop_bank) from None
    backbone = getattr(pipe.backbone, "options", {}) or {}
    workload = "large" if backbone.get("preset") == "paper" else "small"
    choice = configure_threads(args.threads, workload=workload, device=backbone.get("device"))
    print(report("generate", choice), file=sys.stderr)
    class_map = pipe.backbone.class_map
    if class_map is None:
        raise InputError(f"{model} records no class map; re-save it with a current htd")
    layouts = read_layouts(args, class_map, output)
    options = pipe.generation_options(  # decided once; the manifest records them as used
        guidance_scale=args.guidance, scheduler=args.scheduler, num_inference_steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, unconditional=args.unconditional,
    )  # fmt: skip
    used = {
        k: v for k, v in options.to_dict().items() if k != "batch_size"
    }  # batching: same images
    settings = {  # the model by content (weights + config), not by path: retrained = another
        "model": pipeline_id(model), "layouts": relative_to(args.dataset or args.masks, output),
        "crop_bank": args.crop_bank and relative_to(args.crop_bank, output),
        "unconditional": args.unconditional, "generation": used,
        # and the layouts and crop bank by content: rewritten files are other inputs
        "layouts_content": files_key(layout_files(args)),
        "crop_bank_content": files_key(bank_files(args.crop_bank)) if args.crop_bank else None,
    }  # fmt: skip
    if not layouts:
        raise InputError(f"{args.dataset or args.masks}: no layouts to generate from")
    # every layout's size, by its file, before OUTPUT is written (not at layout 17)
    check_layouts(pipe.backbone, layouts, options.batch_size, layout_names(args, len(layouts)))
    if not args.unconditional:  # a builder that cannot serve these layouts fails before OUT exists
        try:
            pipe.build_conditions(layouts[:1], seed=options.seed)
        except InputError as exc:
            raise crop_flag_error(exc, source, args.crop_bank) from None
    saved = output / SETTINGS
    started = holds_samples(output)  # settings bind only a started output
    if started and saved.is_file() and (old := json.loads(saved.read_text())) != settings:
        diff = [k for k in settings if old.get(k) != settings[k]]
        if {"layouts_content", "crop_bank_content"} & set(diff):
            raise InputError(
                f"{output} was started from other layouts or another crop bank (their files "
                "changed since): generate into another folder, so one dataset never mixes inputs"
            )
        if "model" in diff:
            raise InputError(
                f"{output} was started by another model (content id {old.get('model')}; {model} "
                f"is now {settings['model']}: its weights or configuration changed since): "
                "generate into another folder, so one dataset never mixes two models"
            )
        raise InputError(
            f"{output} was generated with other options ({', '.join(diff)}): use them, or another folder"
        )
    locked = output_folder(
        output, KIND, what="--out", legacy=(SETTINGS,), has_results=holds_samples
    )
    with locked:  # to the end, contact sheet included
        with DatasetWriter(output, class_map, extra_columns=EXTRA_COLUMNS) as writer:
            atomic_write_json(saved, settings)
            start = len(writer)
            if start:
                print(
                    f"htd generate: resuming {output} at layout {start} of {len(layouts)}",
                    file=sys.stderr,
                )
            samples = pipe.iter_generate(
                layouts, options, start=start, unconditional=args.unconditional
            )
            with disk_full_estimate(writer, len(layouts)):  # names the space the rest needs
                bar = tqdm(samples, total=len(layouts), initial=start, desc="generate",
                           disable=args.no_progress)  # fmt: skip
                for sample in bar:
                    writer.write(sample)
        sheet = generation_sheet(output, layouts, output / CONTACT_SHEET, bank=args.crop_bank)
    print(f"synthetic dataset: {output} ({len(layouts)} samples)")
    print(f"{output}: contact sheet {sheet} (map | real crops | synthetic image, per row)")
    return 0


def _builders_of(config: str | None) -> list[Any] | None:
    """The condition builders of a pipeline YAML given with ``--config`` (None: the model's)."""
    if config is None:
        return None
    from htd_core.config import component_list, load_config
    from htd_core.errors import ConfigError

    data, label = load_config(config)
    specs = component_list(data.get("condition_builders"), f"{label}: condition_builders")
    if not specs:
        raise ConfigError(f"{label}: no condition_builders listed")
    return specs


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="synthesize image+mask pairs from maps with a trained backbone (resumable)",
        description="Generate one synthetic patch per layout with a model folder written by `htd train` (or Backbone.save). Rerun the same command to resume.",
        order=60,
    )
    registry.register("generate", command)
