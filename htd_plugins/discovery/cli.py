"""The stages of ``htd discover`` run from its parsed arguments: the slides given (files,
folders, lists), this job's shard and process, the stage's library call and what it prints.
The parser and the output checks are :mod:`htd_plugins.commands.discover`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".tif", ".tiff", ".scn", ".svslide", ".bif", ".vms",
                  ".jp2", ".png", ".jpg", ".jpeg"}  # fmt: skip
LIST_SUFFIXES = {".txt", ".lst", ".list"}


def expand_slides(items: list[Path]) -> list[Path]:
    """Files as given; folders -> their slide files; .txt lists -> their lines."""
    out: list[Path] = []
    for item in items:
        if item.is_dir():
            out += sorted(f for f in item.iterdir() if f.suffix.lower() in SLIDE_SUFFIXES)
        elif item.suffix.lower() in LIST_SUFFIXES and item.is_file():
            lines = [ln.strip() for ln in item.read_text().splitlines()]
            out += [(item.parent / ln) if not Path(ln).is_absolute() else Path(ln)
                    for ln in lines if ln and not ln.startswith("#")]  # fmt: skip
        else:
            out.append(item)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    from htd_core.errors import InputError

    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected i/n such as 0/4") from None
    if n < 1 or not 0 <= i < n:  # at parse time, before --out is checked or locked
        raise InputError(f"--shard {text}: shard {i}/{n} is invalid: use i/n with 0 <= i < n")
    return i, n


def engine_options(args: argparse.Namespace):
    """``embed``'s Dask engine options, or None for the one-process path.

    Raises:
        InputError: ``--scheduler`` with ``--engine process``.
    """
    from htd_core.errors import InputError

    engine = args.engine or ("dask" if args.scheduler else "process")
    if engine == "process":
        if args.scheduler:
            raise InputError(f"--scheduler {args.scheduler} needs --engine dask (or no --engine)")
        return None
    from htd_plugins.discovery.engine import EngineOptions

    return EngineOptions(scheduler=args.scheduler, local_workers=args.local_workers,
                         connect_timeout=args.connect_timeout, retries=args.retries,
                         tiles_per_task=args.tiles_per_task, task_threads=args.task_threads)  # fmt: skip


def _report_skipped(skipped: dict[str, str]) -> int:
    for path, reason in skipped.items():
        print(f"htd discover: skipped {path}: {reason}", file=sys.stderr)
    return 1 if skipped else 0


def run_embed(args: argparse.Namespace) -> int:
    from htd_core import create
    from htd_core.errors import InputError
    from htd_plugins.discovery.embed import embed_slides, select_shard
    from htd_plugins.discovery.patches import GridOptions
    from htd_plugins.discovery.store import EmbeddingStore

    shard = parse_shard(args.shard)
    slides = expand_slides(args.slides)
    if not slides:  # an empty folder would otherwise "succeed" with an empty store
        raise InputError(
            f"no slide files in {', '.join(map(str, args.slides))} (looked for "
            f"{', '.join(sorted(SLIDE_SUFFIXES))}): give slide files, folders of them or a list"
        )
    select_shard(slides, shard)  # a bad --shard or two slides of one name: before the store
    if args.stain_target is not None and args.stain_norm is None:
        raise InputError("--stain-target needs --stain-norm macenko|vahadane|reinhard")
    options = GridOptions(read_mpp=args.mpp, patch_size=args.patch_size, stride=args.stride,
                          min_tissue=args.min_tissue, slide_mpp=args.slide_mpp)  # fmt: skip
    state = process_state(args.device)  # accelerate launch: this process's share of the slides
    multi_gpu = state.num_processes > 1 and state.device.type != "cpu"
    device = args.device or (str(state.device) if multi_gpu else None)  # one GPU per process
    encoder_options = {k: v for k, v in (("weights", args.weights), ("device", device)) if v}
    encoder = create("encoders", args.encoder, **encoder_options)
    stain = None
    if args.stain_norm:
        from htd_plugins.discovery.stain import fit_target

        stain = fit_target(args.stain_norm, args.stain_target)
    identity = {"encoder": encoder.name, "weights_id": encoder.weights_id,
                "embed_dim": encoder.embed_dim, "read_mpp": args.mpp, "patch_size": args.patch_size,
                "stain": None if stain is None else f"{stain['method']}: {stain['target']}",
                "stain_target": stain}  # fmt: skip
    store = EmbeddingStore(args.out, identity)
    print(f"htd discover embed: encoder {encoder.label}, store {args.out}", file=sys.stderr)
    process = (state.process_index, state.num_processes)
    if state.num_processes > 1:
        mine = len(select_shard(slides, shard, process))
        print(f"htd discover embed: process {process[0]} of {process[1]} embeds {mine} of "
              f"{len(slides)} slides", file=sys.stderr)  # fmt: skip
    engine = engine_options(args)
    if engine is None:
        report = embed_slides(store, slides, encoder, options, shard=shard, process=process,
                              batch_size=args.batch_size, workers=args.workers,
                              progress=not args.no_progress)  # fmt: skip
    else:  # workers build the encoder themselves, from its registered name
        from functools import partial

        from htd_plugins.discovery.engine_run import embed_on_cluster

        n = engine.local_workers
        where = engine.scheduler or f"a local cluster of {n} worker{'s' * (n != 1)}"
        print(f"htd discover embed: Dask engine on {where}", file=sys.stderr)
        factory = partial(create, "encoders", args.encoder, **encoder_options)
        report = embed_on_cluster(store, slides, factory, options, engine, shard=shard,
                                  batch_size=args.batch_size, progress=not args.no_progress)  # fmt: skip
    for slide_id, name in report.names.items():  # the terminal, and the local-only csv
        print(f"{slide_id} <- {name}", file=sys.stderr)
    from htd_plugins.discovery.slide_ids import record_slide_ids

    where = record_slide_ids(args.out, report.names)
    if where is not None:
        print(f"htd discover embed: slide ids -> file names in {where} (local only: do not "
              "share it)", file=sys.stderr)  # fmt: skip
    for slide_id, meta in report.results.items():
        print(f"{slide_id}: {meta['n_patches']} patches ({meta['status']})")
    return _report_skipped(report.skipped)


def parse_levels(text: str) -> tuple[int, ...]:
    from htd_core.errors import InputError

    try:
        levels = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise InputError(f"--levels {text!r}: expected integers such as 5,10,20,50,100") from None
    if not levels or levels[0] < 1:
        raise InputError(f"--levels {text!r}: give positive granularities")
    return levels


def run_cluster(args: argparse.Namespace) -> int:
    from htd_plugins.discovery.clustering import cluster_stores
    from htd_plugins.discovery.kmeans import KMeansOptions

    options = KMeansOptions(
        n_phenotypes=args.phenotypes, coarse_k=args.coarse_k, split_criterion=args.split_criterion,
        split_threshold=args.split_threshold, fit_sample=args.fit_sample,
        min_cluster_size=args.min_cluster_size, seed=args.seed, backend=args.kmeans_backend,
    )  # fmt: skip
    result = cluster_stores(args.store, args.out, samples_per_slide=args.samples_per_slide,
                            diversity=args.diversity, levels=parse_levels(args.levels),
                            options=options, progress=not args.no_progress,
                            workers=args.workers)  # fmt: skip
    print(f"{result.tree.n_leaves} phenotypes from {result.info['n_sampled']} patches; "
          f"levels {list(result.levels)}; written to {args.out}")  # fmt: skip
    return 0


def run_maps(args: argparse.Namespace) -> int:
    from htd_core.errors import InputError
    from htd_plugins.discovery.distill import maps_with_classifier
    from htd_plugins.discovery.embed import slides_by_id
    from htd_plugins.discovery.maps import maps_from_stores

    if args.classifier is not None:
        if args.store:
            raise InputError(
                "maps takes --store (teacher embeddings) or --classifier (student), not both"
            )
        slides = expand_slides(args.slides)
        if not slides:
            raise InputError("--classifier reads pixels: pass the slide files, folders or lists")
        written, skipped = maps_with_classifier(
            args.classifier, args.clustering, slides, args.out, stride=args.stride,
            min_tissue=args.min_tissue, slide_mpp=args.slide_mpp, shard=parse_shard(args.shard),
            batch_size=args.batch_size, workers=args.workers, progress=not args.no_progress,
        )  # fmt: skip
    else:
        if not args.store:
            raise InputError("maps needs --store (teacher embeddings) or --classifier (student)")
        files = slides_by_id(expand_slides(args.slides))  # by id: the store keeps no paths
        written, skipped = maps_from_stores(args.store, args.clustering, args.out,
                                            slide_ids=list(files) or None, slide_files=files,
                                            progress=not args.no_progress), {}  # fmt: skip
    for slide_id, levels in written.items():
        print(f"{slide_id}: maps at k={sorted(levels)} in {args.out}")
    return _report_skipped(skipped)


def run_distill(args: argparse.Namespace) -> int:
    from htd_plugins.discovery.distill import distill

    config = distill(
        args.store, args.clustering, args.out, slides=expand_slides(args.slides),
        input_size=args.input_size, arch=args.arch,
        depth=args.depth, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, block=args.block,
        holdout=args.holdout,
        max_patches=args.max_patches, workers=args.workers, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    m, split = config["metrics"], config["split"]
    levels = ", ".join(f"k={k}: {m[f'top1_k{k}']:.3f} (majority {m[f'majority_baseline_k{k}']:.3f})"
                       for k in config["levels"])  # fmt: skip
    held = (f"{len(split['val_slides'])} whole slides" if split["holdout"] == "slides" else
            f"{split['block']}x{split['block']}-cell blocks, {split['margin_patches']} patches in "
            f"margins of {max(split['margin_cells'].values())} cells left out")  # fmt: skip
    print(f"held-out top-1 {m['top1']:.3f} (majority baseline {m['majority_baseline']:.3f}; "
          f"{levels}); {config['n_train']} train / {config['n_val']} held-out patches "
          f"(held out: {held}); saved to {args.out}")  # fmt: skip
    return 0


def process_state(device: str | None = None):
    """accelerate's ``PartialState``: process index and count under ``accelerate launch``
    (or ``torchrun``), one process otherwise. Without a GPU (or with ``--device cpu``, or
    ``accelerate launch --cpu``) the processes meet over gloo (accelerate's MULTI_CPU)."""
    import os

    import torch
    from accelerate import PartialState

    cpu = (
        not torch.cuda.is_available()
        or (device or "").startswith("cpu")
        or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    )
    return PartialState(cpu=cpu)
