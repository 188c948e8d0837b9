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

SETTINGS = "generate.json"
EXTRA_COLUMNS = ("layout", "seed", "guidance_scale", "crop_provenance")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="synthesize image+mask pairs from maps with a trained backbone (resumable)",
        description="Generate one synthetic patch per layout with a model folder written by "
        "`htd train` (or Backbone.save). Rerun the same command to resume.",
    )
    p.add_argument("model", help="model folder (htd_config.json + one folder per component)")
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
        "--config", help="pipeline YAML whose conditioners to use (default: MODEL/pipeline.yaml)"
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
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--seed", type=int, default=0, help="layout i uses seed + i (noise and crop choice)"
    )
    p.add_argument("--limit", type=int, help="generate for at most this many layouts")
    p.set_defaults(func=run)


def load_backbone(model: Path):
    """The backbone saved in ``model`` (its class found by the registered name it records)."""
    import json

    from htd_core.errors import InputError
    from htd_core.plugins import registry

    config_path = model / "htd_config.json"
    if not config_path.is_file():
        raise InputError(
            f"{model} is not a model folder (no htd_config.json): give the folder `htd train` wrote"
        )
    name = json.loads(config_path.read_text()).get("backbone", "")
    factory = registry("backbones").entry(name).factory
    return factory.load(model)


def load_builder(model: Path, config: str | None, crop_bank: str | None):
    """The condition builder the model was trained with, its crop builders given the bank."""
    from htd_core.config import component_list, load_config
    from htd_core.errors import ConfigError
    from htd_core.interfaces import ComposedConditionBuilder
    from htd_core.plugins import get_plugin_manager
    from htd_core.registry import accepted_options

    source = Path(config) if config else model / "pipeline.yaml"
    if not source.is_file():
        raise ConfigError(
            f"no conditioners for {model}: it has no pipeline.yaml (written by `htd train`); "
            "pass --config with the pipeline YAML the model was trained with"
        )
    data, label = load_config(source)
    specs = component_list(data.get("conditioners"), f"{label}: conditioners")
    if not specs:
        raise ConfigError(f"{label}: no conditioners listed")
    reg = get_plugin_manager().registry("htd_register_condition_builders")
    builders = []
    for spec in specs:
        if crop_bank and "bank" in (accepted_options(reg.entry(spec.name).factory) or []):
            spec = type(spec)(spec.name, {**spec.options, "bank": crop_bank}, spec.where)
        builders.append(spec.create(reg))
    return builders[0] if len(builders) == 1 else ComposedConditionBuilder(builders)


def read_layouts(args: argparse.Namespace, class_map: Any) -> list[Any]:
    """Layouts (samples, with images when they come from a dataset)."""
    import numpy as np
    from PIL import Image

    from htd_core.dataset import Dataset
    from htd_core.errors import InputError
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
    paths = sorted(p for p in Path(args.masks).glob("*.png"))[: args.limit]
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
    from htd_core.interfaces import last_provenance
    from htd_core.io import atomic_write_json
    from htd_core.types import Condition, TissueSample

    model, output = Path(args.model), Path(args.output)
    backbone = load_backbone(model)
    if backbone.class_map is None:
        raise InputError(f"{model} records no class map; re-save it with a current htd")
    builder = None if args.unconditional else load_builder(model, args.config, args.crop_bank)
    layouts = read_layouts(args, backbone.class_map)
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
    guidance = args.guidance if args.guidance is not None else backbone.options["guidance_scale"]
    with DatasetWriter(output, backbone.class_map, extra_columns=EXTRA_COLUMNS) as writer:
        bar = tqdm(total=len(layouts), initial=len(writer), desc="generate")
        for start in range(len(writer), len(layouts), args.batch_size):
            chunk = layouts[start : start + args.batch_size]
            conditions, provenance = [], []
            for i, layout in enumerate(chunk, start):
                if builder is None:
                    conditions.append(Condition())
                    provenance.append(None)
                    continue
                conditions.append(builder.build(layout, seed=args.seed + i))
                prov = last_provenance(builder)
                provenance.append(dict(prov) if prov is not None else None)
            images = backbone.generate(
                conditions, seed=args.seed + start, guidance_scale=args.guidance,
                scheduler=args.scheduler, num_inference_steps=args.steps, batch_size=args.batch_size,
            )  # fmt: skip
            for i, (image, layout, prov) in enumerate(
                zip(images, chunk, provenance, strict=True), start
            ):
                meta = {
                    **layout.meta,
                    "seed": args.seed + i,
                    "guidance_scale": guidance,
                    "crop_provenance": prov or "",
                }
                writer.write(TissueSample(image, layout.mask, backbone.class_map, meta))
            bar.update(len(chunk))
        bar.close()
    print(f"synthetic dataset: {output} ({len(layouts)} samples)")
    return 0
