"""``htd crop-bank DATA --out bank.safetensors``: a crop bank of real tissue, from the command line.

``htd generate --masks`` and ``htd generate-slide`` give the crop builder layouts without
images: its crops then come from a bank (:class:`htd_plugins.condition_builders.CropBank`),
one real crop per class drawn with the seed. This verb builds one, as ``htd experiment``
builds ``crop-bank.safetensors``, from the **train split only** of DATA (an ``htd sample``
dataset, or an image + mask tile folder such as GlaS), split by source image through the
``tiles`` sampler (a preset's official split, else a seeded random split); an ``htd sample``
dataset whose manifest records each patch's ``split`` keeps its recorded train patches (no new
split of data that is already one); ``--split all`` takes every image of a folder that holds
training data only.

Written: FILE (``.safetensors``: uint8 crops, options and provenance in its header) and
``FILE.json`` beside it (the same, readable). The provenance of each crop is its source's
opaque id, position and size; the bank's ``options.data`` records the split, the number of
samples and the opaque ids of the source images it drew from (no file names, no paths).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.interfaces.command import make_command

#: ``-o`` keys: the options of ``CropBank.from_samples`` (the seed is ``--seed``).
BANK_OPTIONS = ("size", "min_size", "min_inside", "per_sample", "max_per_class",
                "reference_mpp", "max_fraction")  # fmt: skip
FORMAT = "htd-crop-bank"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd crop-bank``."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least, number_at_least

    p.add_argument("data", help="an `htd sample` dataset or an image + mask tile folder")
    co.add_output_argument(p, "crop bank file to write (.safetensors; its folder is created)")
    p.add_argument(
        "--split", choices=("train", "all"), default="train",
        help="train (default): the train split by source image (a preset's official split, "
        "else a seeded random one); all: every image (DATA holds training data only)",
    )  # fmt: skip
    p.add_argument("--classes", help="class names of a tile folder that is not a preset "
                   "(comma-separated, mask-code order)")  # fmt: skip
    p.add_argument("--match", help="only images whose file name matches this glob")
    p.add_argument("--mpp", type=number_at_least(0, above=True),
                   help="um/px of the images when DATA does not say (crop sizes scale by it)")  # fmt: skip
    p.add_argument("--test-fraction", type=number_at_least(0, above=True, high=1, below=True),
                   default=0.2, help="held-out share of source images of a random split")  # fmt: skip
    p.add_argument("--split-seed", type=int_at_least(0), default=0, help="seed of a random split")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of crop choice")
    co.add_component_options(
        p, "the bank: " + ", ".join(BANK_OPTIONS), "-o size=96 -o per_sample=2"
    )
    co.add_progress_argument(p)


def bank_options(pairs: list[str]) -> dict[str, Any]:
    """The ``-o`` pairs, checked against :data:`BANK_OPTIONS`.

    Raises:
        ConfigError: an unknown key (with the closest one and the list).
    """
    from htd_core.config import parse_options
    from htd_core.errors import ConfigError, suggest

    options = parse_options(pairs, None)
    for key in options:
        if key not in BANK_OPTIONS:
            raise ConfigError(
                f"-o {key}=...: the crop bank has no option {key!r}.{suggest(key, list(BANK_OPTIONS))} "
                f"Options: {', '.join(BANK_OPTIONS)}"
            )
    return options


def check_bank_output(out: Path) -> Path:
    """The bank's path (``.safetensors`` appended), refused before any work when it or its
    ``.json`` sidecar exists and is not a crop bank htd wrote, or its folder cannot be made.

    Raises:
        InputError: one line naming the path and the fix.
    """
    import json

    from htd_core.errors import InputError
    from htd_core.outputs import writable

    path = out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")
    for file in (path, path.with_suffix(".json")):
        if file.is_dir():
            raise InputError(f"--out {file} is a folder: give a file name such as bank.safetensors")
        if file.exists() and not _ours(file, json):
            raise InputError(
                f"--out {file} exists and is not a crop bank htd wrote; htd does not replace "
                "it: choose another --out"
            )
    parent = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not parent.is_dir() or not writable(parent):
        raise InputError(f"--out {path}: cannot write in {parent}; choose another --out")
    return path


def _ours(file: Path, json: Any) -> bool:
    try:
        if file.suffix == ".json":
            return json.loads(file.read_text()).get("format") == FORMAT
        from safetensors import safe_open

        with safe_open(str(file), framework="np") as fh:
            return (fh.metadata() or {}).get("format") == FORMAT
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def recorded_split(data: Path) -> Any:
    """The htd dataset at ``data`` when its manifest records a ``split`` per patch (``htd
    sample`` of a split tile folder), else None."""
    from htd_core.dataset import Dataset, manifest_columns

    return Dataset(data) if "split" in manifest_columns(data) else None


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from htd_core.errors import InputError
    from htd_core.plugins import create
    from htd_core.splits import sample_source
    from htd_plugins.condition_builders import CropBank

    data = Path(args.data)
    if not data.is_dir():
        what = "is a file" if data.exists() else "does not exist"
        raise InputError(
            f"DATA {args.data} {what}: give a folder of images/ + masks/ (e.g. "
            "../shared/data/glas) or a dataset written by `htd sample`"
        )
    options = bank_options(args.option)
    path = check_bank_output(Path(args.out))  # before reading any image
    recorded = recorded_split(Path(args.data)) if args.split == "train" else None
    sampler_options = {"root": args.data, "split": None if args.split == "all" else "train",
                       "match": args.match, "mpp": args.mpp, "test_fraction": args.test_fraction,
                       "split_seed": args.split_seed}  # fmt: skip
    if args.classes:
        sampler_options["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if recorded is not None:  # the dataset's own split, recorded by htd sample
        rows = [i for i, row in enumerate(recorded.rows) if row.get("split") == "train"]
        samples = [recorded[i] for i in tqdm(rows, desc="read", unit="image",
                                             disable=args.no_progress)]  # fmt: skip
    else:
        sampler = create("patch_samplers", "tiles", **sampler_options)
        samples = list(tqdm(sampler, desc="read", unit="image", disable=args.no_progress))
    if not samples:
        raise InputError(
            f"{args.data}: no image in its {args.split} split: nothing to cut crops from"
        )
    bank = CropBank.from_samples(samples, seed=args.seed, **options)
    if not len(bank):
        raise InputError(
            f"{args.data}: no crop fits the images' class regions (size {options.get('size', 200)} "
            "px, at least min_inside of one class): lower -o size or -o min_size"
        )
    sources = sorted({sample_source(s.meta) for s in samples} - {""})
    bank.options["data"] = {
        "made_by": "htd crop-bank", "split": args.split, "split_seed": args.split_seed,
        "test_fraction": args.test_fraction if args.split == "train" else None,
        "n_samples": len(samples), "source_ids": sources,
        "classes": list(samples[0].class_map.names),
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    bank.save(path)
    counts = ", ".join(f"{k} {v}" for k, v in bank.counts().items())
    print(f"crop bank: {path} ({counts} crops from {len(samples)} images of {len(sources)} "
          f"source images, {args.split} split); provenance: {path.with_suffix('.json')}")  # fmt: skip
    missing = [n for n in samples[0].class_map.names if n not in bank.counts()]
    if missing:
        print(f"htd crop-bank: warning: no crop of {missing}: layouts with these classes cannot "
              "be generated from this bank", file=sys.stderr)  # fmt: skip
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="build a crop bank of real tissue from a dataset's train split",
        description="Cut real crops per class from the train split (by source image) of an htd dataset or tile folder into a crop bank file, for `htd generate --crop-bank` and `htd generate-slide --crop-bank` (docs/slide-synthesis.md).",
        order=62,
    )
    registry.register("crop-bank", command)
