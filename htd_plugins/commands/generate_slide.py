"""``htd generate-slide MODEL --map LAYOUT --out slide.tif``: a synthetic pyramidal slide.

The layout (label mask, QuPath GeoJSON / ASAP XML, discovery pseudo map, or a real slide's
annotations) is denoised as one latent canvas in overlapping windows of the model's size,
blended at every step, and written as a pyramidal TIFF with its label mask, a QuPath GeoJSON
of the layout and a manifest of the crops used (opaque ids). Interrupted runs resume from the
last denoising step when rerun with the same options (docs/slide-synthesis.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd generate-slide`` (numbers checked at parse time)."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least, number_at_least

    p.add_argument("model", help="saved pipeline folder (`htd train`'s model/)")
    p.add_argument("--map", required=True, dest="layout", metavar="LAYOUT",
                   help="label mask (.png/.tif) or annotations (.geojson/.json/.xml/.db)")  # fmt: skip
    co.add_output_argument(
        p, "slide to write (.tif; its folder is created); sidecars and a preview go beside it"
    )
    g = p.add_argument_group("layout")
    g.add_argument(
        "--mpp",
        type=number_at_least(0, above=True),
        help="um/px of the layout (annotations: to rasterise at)",
    )
    g.add_argument("--size", type=int_at_least(1), nargs=2, metavar=("W", "H"),
                   help="canvas of drawn annotations in px (default: their extent); "
                   "annotations beyond it are an error unless --crop-layout")  # fmt: skip
    g.add_argument("--crop-layout", action="store_true",
                   help="cut annotations that extend beyond --size (says how much was cut)")  # fmt: skip
    g.add_argument("--fill", help="class of unannotated pixels (or @ignore)")
    g.add_argument("--label-map", help='JSON {"layout label": "model class" | "@ignore"}')
    g.add_argument(
        "--label-classes", help="names of a mask's codes: JSON file (list or {code: name})"
    )
    g.add_argument("--slide", help="the real slide the annotations belong to")
    g.add_argument(
        "--slide-mpp",
        type=number_at_least(0, above=True),
        help="level-0 um/px of --slide when it has none",
    )
    g.add_argument("--region", type=int_at_least(0), nargs=4, metavar=("X", "Y", "W", "H"),
                   help="part of --slide in level-0 px (default: the annotations' extent)")  # fmt: skip
    s = p.add_argument_group("synthesis")
    s.add_argument("--crop-bank", help="crop bank file (crops for layouts without images)")
    s.add_argument("--crops", choices=("window", "region"), default="window",
                   help="one crop per class per window, or per connected region")  # fmt: skip
    s.add_argument(
        "--overlap",
        type=number_at_least(0, high=1, below=True),
        default=0.5,
        help="window overlap in [0, 1) (0: plain tiling)",
    )
    s.add_argument(
        "--model-mpp",
        type=number_at_least(0, above=True),
        help="um/px of the model's training patches (default: recorded)",
    )
    s.add_argument("--rescale", action="store_true",
                   help="resample a layout far from the model's mpp to the model's mpp")  # fmt: skip
    s.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="noise and crop choice (same seed, same slide)",
    )
    s.add_argument(
        "--scheduler", choices=("ddim", "dpmsolver++"), help="sampler (default: the model's)"
    )
    s.add_argument("--steps", type=int_at_least(1), help="denoising steps (default: the model's)")
    s.add_argument(
        "--guidance", type=number_at_least(1), help="classifier-free guidance scale (1: none)"
    )
    s.add_argument(
        "--batch-size", type=int_at_least(1), help="windows per model call (default: the model's)"
    )
    s.add_argument(
        "--quality", type=int_at_least(1, 100), default=90, help="JPEG quality of the slide's tiles"
    )
    co.add_compute_arguments(p, device_help="default: the model's device option, auto")
    co.add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    import sys

    from htd_core.errors import InputError
    from htd_core.pipeline import Pipeline
    from htd_core.threads import check_device, configure_threads, report
    from htd_plugins.commands.layouts import crop_flag_error
    from htd_plugins.commands.logs import route_logging
    from htd_plugins.slide_synthesis.api import check_output, generate_slide
    from htd_plugins.slide_synthesis.readers import read_layout

    route_logging("generate-slide")  # tiatoolbox's lines: stderr, WARNING and above
    check_device(args.device)
    check_output(args.out)  # before loading anything
    label_map = _json_option(args.label_map, "--label-map")
    try:
        pipe = Pipeline.from_pretrained(
            args.model,
            builder_options={"bank": args.crop_bank} if args.crop_bank else None,
            device=args.device,
        )
    except InputError as exc:
        raise crop_flag_error(exc, f"--map {args.layout}", args.crop_bank) from None
    backbone = getattr(pipe.backbone, "options", {}) or {}
    workload = "large" if backbone.get("preset") == "paper" else "small"
    choice = configure_threads(args.threads, workload=workload, device=backbone.get("device"))
    print(report("generate-slide", choice), file=sys.stderr)
    class_map = pipe.backbone.class_map
    if class_map is None:
        raise InputError(f"{args.model} records no class map; re-save it with a current htd")
    layout = read_layout(
        args.layout, class_map, mpp=args.mpp, size=args.size, fill=args.fill,
        label_map=label_map, label_classes=args.label_classes, slide=args.slide,
        slide_mpp=args.slide_mpp, region=args.region, crop=args.crop_layout,
    )  # fmt: skip
    if layout.info.get("cut"):
        print(f"htd generate-slide: --crop-layout: {layout.info['cut']}", file=sys.stderr)
    try:
        summary = generate_slide(
            pipe, layout, args.out, seed=args.seed, overlap=args.overlap, crops=args.crops,
            model_mpp=args.model_mpp, rescale=args.rescale, guidance_scale=args.guidance,
            scheduler=args.scheduler, num_inference_steps=args.steps, batch_size=args.batch_size,
            quality=args.quality, progress=not args.no_progress,
        )  # fmt: skip
    except InputError as exc:
        raise crop_flag_error(exc, f"--map {args.layout}", args.crop_bank) from None
    levels = " ".join(f"{w}x{h}" for w, h in summary["levels"])
    print(
        f"synthetic slide: {args.out} ({summary['width']} x {summary['height']} px at "
        f"{summary['mpp']:g} um/px, levels {levels}; {summary['windows']['count']} windows; "
        f"{summary['mpp_check']})"
    )
    print("beside it: " + ", ".join(v for k, v in summary["files"].items() if k != "slide"))
    return 0


def _json_option(text: str | None, flag: str) -> Any:
    import json

    from htd_core.errors import InputError

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{flag} {text!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f'{flag} must be a JSON object such as {{"tumour": "tumor"}}')
    return value


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="synthesize a seamless pyramidal slide (TIFF + label mask + GeoJSON) from a large map",
        description="Denoise a large layout in overlapping windows of a model written by `htd train`, blended at every step, and write a pyramidal TIFF that OpenSlide, tiatoolbox and QuPath open, with its label mask, a QuPath GeoJSON of the layout and a crop manifest. Rerun the same command to resume an interrupted run.",
        order=65,
    )
    registry.register("generate-slide", command)
