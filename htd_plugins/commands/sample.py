"""``htd sample``: run a patch sampler and write its samples as a dataset folder.

The dataset (``images/``, ``masks/``, ``manifest.csv``, ``classes.json``) is written through
:class:`htd_core.dataset.DatasetWriter`; rerunning the same command after an interruption
(even ``kill -9``) continues after the last complete sample. A fingerprint of the sampler's
name and options (``sampling.json``, a hash only: no paths or slide metadata) refuses a
resume with different options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.config import parse_options
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument

FINGERPRINT = "sampling.json"
CONTACT_SHEET = "contact_sheet.png"  # a few patches with mask outlines, rewritten each run
KIND = "sample"  # output kind (htd_core.outputs): OUTPUT is new, empty or an `htd sample` dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd sample`` (``htd sample NAME --help`` lists sampler NAME's options)."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least

    co.add_component_help(p, "patch_samplers", "sampler", "sampler")
    p.add_argument("sampler", help="registered sampler name (see `htd plugins`)")
    co.add_output_argument(
        p, "dataset folder (created; an existing one is resumed)", old_positional=True
    )
    co.add_component_options(p, "the sampler", "-o classes=[tumor,stroma] -o slide_mpp=2.0")
    p.add_argument("--config", help="YAML file: a mapping of sampler options (-o overrides it)")
    p.add_argument(
        "--limit", type=int_at_least(1), help="stop when the dataset holds this many samples"
    )
    p.add_argument(
        "--shard-size",
        type=int_at_least(1),
        help="write WebDataset tar shards of this many samples (shard-000000.tar, ..., "
        "shards.json) for streamed training, instead of PNG files (docs/sampling.md)",
    )
    add_threads_argument(p)  # no --device: samplers run no model
    co.add_progress_argument(p)


def fingerprint(sampler: str, options: dict[str, Any]) -> dict[str, str]:
    text = json.dumps({"sampler": sampler, "options": options}, sort_keys=True, default=str)
    return {"sampler": sampler, "options_sha256": hashlib.sha256(text.encode()).hexdigest()}


def run(args: argparse.Namespace) -> int:
    import itertools
    import warnings

    from htd_core.coverage import warn_empty_classes
    from htd_core.dataset import (
        DatasetWriter,
        disk_full_estimate,
        manifest_columns,
    )
    from htd_core.errors import InputError
    from htd_core.io import atomic_write_json
    from htd_core.outputs import check_output, output_folder
    from htd_core.plugins import create
    from htd_core.shard_writer import ShardWriter
    from htd_core.shards import is_shard_folder
    from htd_core.threads import explicit_threads, report
    from htd_plugins.commands.logs import route_logging
    from htd_plugins.pictures import contact_sheet

    route_logging("sample", logging.ERROR)  # tiatoolbox's notices only from ERROR up
    options = parse_options(args.option, args.config)
    out = Path(args.out)
    print(report("sample", explicit_threads(args.threads)), file=sys.stderr)
    check_output(out, KIND, what="--out", legacy=(FINGERPRINT,))  # before opening any slide
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        sampler = create("patch_samplers", args.sampler, **options)
        stamp = fingerprint(args.sampler, options)
        stamp_path = out / FINGERPRINT
        if stamp_path.is_file() and json.loads(stamp_path.read_text()) != stamp:
            raise InputError(
                f"{out} was sampled with other options (or another sampler): rerun with the same "
                "options to resume, or choose another output folder"
            )
        resuming = (out / "manifest.csv").is_file() or is_shard_folder(out)
        if resuming and not stamp_path.is_file():
            raise InputError(
                f"{out} holds a dataset not written by `htd sample`: choose another folder"
            )
        if resuming and is_shard_folder(out) != bool(args.shard_size):
            held, given = ("shards", "with") if is_shard_folder(out) else ("PNG files", "without")
            raise InputError(
                f"{out} holds {held}: rerun {given} --shard-size to resume it, or choose "
                "another folder"
            )
        # a sampler that cut one split records it per patch (htd crop-bank reads it); a folder
        # begun without that column resumes without it
        extra = ("split",) if getattr(sampler, "split", None) else ()
        if resuming and not is_shard_folder(out) and "split" not in manifest_columns(out):
            extra = ()  # (a shard folder keeps the keys its index records)

        def open_writer():
            if args.shard_size:
                return ShardWriter(out, sampler.class_map, args.shard_size, extra)
            return DatasetWriter(out, sampler.class_map, extra)

        writer = open_writer() if resuming else None
        start = len(writer) if writer else 0
        if args.limit is not None and start >= args.limit:
            writer.close()
            print(f"{out}: already holds {start} samples (--limit {args.limit}); nothing to do")
            return 0
        iterate = getattr(sampler, "iter_from", None)
        samples = iterate(start) if iterate else itertools.islice(iter(sampler), start, None)
        try:  # a bad input fails here, before a new output folder is created
            first = next(samples, None)
            if first is None and not start:
                raise InputError(f"{args.sampler} yielded no sample: nothing was written")
        except BaseException:
            if writer:
                writer.close()
            raise
        with output_folder(  # locked to the end; removed if it fails before its first sample
            out, KIND, what="--out", legacy=(FINGERPRINT,), has_results=has_results
        ):
            writer = writer or open_writer()
            if start:
                print(
                    f"htd sample: resuming {out}: {start} samples already written", file=sys.stderr
                )
            known = sampler.expected_samples() if hasattr(sampler, "expected_samples") else None
            total = (
                min(v for v in (known, args.limit) if v is not None)
                if known or args.limit
                else None
            )
            with writer, disk_full_estimate(writer, total):
                atomic_write_json(stamp_path, stamp)
                rest = itertools.chain([first], samples) if first is not None else iter(())
                _write(rest, writer, args.limit, start, out, total, args.no_progress)
            sheet = contact_sheet(out, out / CONTACT_SHEET)
            print(f"{out}: contact sheet {sheet} (patches, mask outlines, class fractions)")
            if args.shard_size:
                pixels = json.loads((out / "shards.json").read_text())["pixels"]
                warn_empty_classes(pixels, len(writer), f"shards {out}")
            else:
                _warn_empty_classes(out)
    return 0


def has_results(out: Path) -> bool:
    """Whether ``out`` holds a sample: a manifest row, or a finished shard."""
    from htd_core.dataset import holds_samples

    index = out / "shards.json"
    return holds_samples(out) or (index.is_file() and bool(json.loads(index.read_text())["shards"]))


def _warn_empty_classes(out: Path) -> None:
    """Name every class that no sample of the dataset holds (its channel would train empty)."""
    from htd_core.coverage import warn_empty_classes
    from htd_core.dataset import Dataset

    data = Dataset(out)
    pixels = {
        n: sum(float(r.get(f"frac:{n}") or 0) for r in data.rows) for n in data.class_map.names
    }
    warn_empty_classes(pixels, len(data), f"dataset {out}")


def _write(
    samples: Any,
    writer: Any,
    limit: int | None,
    start: int,
    out: Path,
    total: int | None,
    quiet: bool = False,
) -> None:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(initial=start, total=total, unit="patch", desc=f"htd sample -> {out.name}",
               disable=quiet)  # fmt: skip
    with logging_redirect_tqdm(), bar:  # warnings print above the bar, not inside it
        for sample in samples:
            writer.write(sample)
            bar.update(1)
            if limit is not None and len(writer) >= limit:
                break
    added = len(writer) - start
    note = " (resumed)" if start else ""
    print(
        f"{out}: {len(writer)} samples, {added} new{note}; classes {list(writer.class_map.names)}"
    )


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="cut training patches from slides or tile folders into a dataset",
        description="Run a registered patch sampler (heterogeneous, entropy, tiles, ...) and write images/, masks/, manifest.csv and classes.json. Resumable: rerun the same command to continue. Options are the sampler's keyword arguments, given as -o KEY=VALUE: `htd sample NAME --help` lists those of sampler NAME (docs/sampling.md).",
        order=20,
    )
    registry.register("sample", command)
