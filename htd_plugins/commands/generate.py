"""``htd generate MODEL OUTPUT``: synthesize a dataset from semantic maps (and real crops).

Layouts come from a dataset (real masks; crops are cut from its real images) or from a folder
of masks (index PNGs, or RGB PNGs painted in the class colours; crops then come from a crop
bank). The output has the layout of ``htd sample`` (images/, masks/, manifest.csv,
classes.json) with extra manifest columns: the layout it came from, its seed, and the crops'
provenance (source slide id and location per class). Resumable: rerun the same command to
continue; ``generate.json`` refuses a resume with other options.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.interfaces.command import make_command

SETTINGS = "generate.json"
EXTRA_COLUMNS = ("layout", "seed", "guidance_scale", "crop_provenance")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd generate``."""
    p.add_argument("model", help="saved pipeline folder (`htd train`'s model/)")
    p.add_argument("output", help="synthetic dataset folder (created or resumed)")
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
        "--scheduler", choices=("ddim", "dpmsolver++"), help="sampler (default: the model's)"
    )
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (1: none)")
    p.add_argument(
        "--batch-size", type=int, help="layouts per batch (default: the model's batch_size)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="layout i uses seed + i (noise and crop choice)"
    )
    p.add_argument("--limit", type=int, help="generate for at most this many layouts")


def read_layouts(args: argparse.Namespace, class_map: Any) -> list[Any]:
    """Layouts (samples, with images when they come from a dataset)."""
    import numpy as np
    from PIL import Image

    from htd_core.dataset import Dataset
    from htd_core.errors import InputError
    from htd_core.images import image_files
    from htd_core.types import TissueSample

    if args.dataset:
        data = Dataset(args.dataset)
        if data.class_map.names != class_map.names:
            raise InputError(
                f"dataset {args.dataset} has classes {list(data.class_map.names)} but the model was "
                f"trained on {list(class_map.names)}"
            )
        n = len(data) if args.limit is None else min(args.limit, len(data))
        return [_with_layout(data[i], f"{args.dataset}#{i}") for i in range(n)]
    paths = image_files(args.masks, match="*.png")[: args.limit]
    if not paths:
        raise InputError(f"{args.masks}: no mask PNGs found")
    out = []
    lut = {tuple(c): i for i, c in enumerate(class_map.colors)}
    for p in paths:
        raw = np.asarray(Image.open(p))
        if raw.ndim == 3:  # painted in class colours
            rgb = raw[..., :3].reshape(-1, 3)
            idx = np.array([lut.get(tuple(v), -1) for v in map(tuple, rgb)]).reshape(raw.shape[:2])
            if (idx < 0).any():
                raise InputError(
                    f"mask {p} has colours that are no class colour {dict(zip(class_map.names, class_map.colors, strict=True))}"
                )
            raw = idx.astype(np.uint8)
        class_map.check_mask(raw, f"mask {p}")
        out.append(TissueSample(None, raw.astype(np.uint8), class_map, {"layout": p.name}))
    return out


def _with_layout(sample: Any, name: str) -> Any:
    sample.meta = {**sample.meta, "layout": name}
    return sample


def run(args: argparse.Namespace) -> int:
    import json

    from tqdm.auto import tqdm

    from htd_core.dataset import DatasetWriter
    from htd_core.errors import InputError
    from htd_core.io import atomic_write_json
    from htd_core.pipeline import Pipeline

    model, output = Path(args.model), Path(args.output)
    pipe = Pipeline.from_pretrained(
        model,
        condition_builders=_builders_of(args.config),
        builder_options={"bank": args.crop_bank} if args.crop_bank else None,
    )
    class_map = pipe.backbone.class_map
    if class_map is None:
        raise InputError(f"{model} records no class map; re-save it with a current htd")
    layouts = read_layouts(args, class_map)
    settings = {
        "model": str(model.resolve()), "layouts": args.dataset or args.masks, "crop_bank": args.crop_bank,
        "unconditional": args.unconditional, "scheduler": args.scheduler, "steps": args.steps,
        "guidance": args.guidance, "seed": args.seed,
    }  # fmt: skip
    saved = output / SETTINGS
    if saved.is_file() and (old := json.loads(saved.read_text())) != settings:
        diff = [k for k in settings if old.get(k) != settings[k]]
        raise InputError(
            f"{output} was generated with other options ({', '.join(diff)}): use them, or another folder"
        )
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, settings)
    options = {
        k: v
        for k, v in (("guidance_scale", args.guidance), ("scheduler", args.scheduler),
                     ("num_inference_steps", args.steps))
        if v is not None
    }  # fmt: skip
    with DatasetWriter(output, class_map, extra_columns=EXTRA_COLUMNS) as writer:
        start = len(writer)
        samples = pipe.iter_generate(
            layouts, seed=args.seed, start=start, batch_size=args.batch_size,
            unconditional=args.unconditional, **options,
        )  # fmt: skip
        for sample in tqdm(samples, total=len(layouts), initial=start, desc="generate"):
            writer.write(sample)
    print(f"synthetic dataset: {output} ({len(layouts)} samples)")
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
