"""``htd discover``: pseudo semantic maps for unannotated slides (embed, cluster, maps, distill).

Typical run::

    htd discover embed slides/ --out runs/store --encoder inception_fid --mpp 0.5
    htd discover cluster --store runs/store --out runs/phenotypes
    htd discover maps --store runs/store --clustering runs/phenotypes --out runs/maps
    htd discover distill slides/ --store runs/store --clustering runs/phenotypes --out runs/student
    htd discover maps --classifier runs/student --clustering runs/phenotypes --out runs/maps2 new_slides/

``embed`` runs under ``accelerate launch`` too (several processes, GPUs or nodes): each process
embeds its share of the slides (no ``--shard`` needed) into the same store.

Every stage is resumable: rerun the same command after an interruption. Slides are named in
every output by their opaque id (a hash of the file name); ``embed`` prints ``id <- file
name`` lines on stderr and keeps them in ``slide_ids.csv`` (local only, mode 0600; ``maps``
given slide files too), the one file that links the two. Stores keep no slide paths:
stages that read pixels (``embed`` on resume, ``distill``, ``maps --classifier``) are given
the slides again.

This module parses the arguments and checks ``--out``; the stages run in
:mod:`htd_plugins.discovery.cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htd_core import hookimpl
from htd_core.cli_options import add_progress_argument
from htd_core.interfaces.command import make_command
from htd_core.threads import add_threads_argument
from htd_plugins.discovery.cli import (
    engine_options,
    parse_shard,
    process_state,
    run_cluster,
    run_distill,
    run_embed,
    run_maps,
)

#: stage -> its --out kind (htd_core.outputs) and the files of such an output written before
#: htd marked its outputs; --out must be new, empty or an htd output of that kind.
OUTPUTS = {"embed": ("embedding-store", ("store.json",)), "cluster": ("phenotypes", ("sample.f16",)),
           "maps": ("pseudo-maps", ()), "distill": ("classifier", ("checkpoint.json",))}  # fmt: skip


class _ShowDefaults(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help when it has a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd discover``; every option's ``--help`` line shows its default."""
    from htd_core.options import int_at_least, number_at_least

    stages = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    fmt = {"formatter_class": _ShowDefaults}

    e = stages.add_parser("embed", help="tissue patches -> float16 embeddings per slide", **fmt)
    _slides_args(e)
    e.add_argument("--out", required=True, type=Path, help="embedding store folder")
    e.add_argument("--encoder", default="inception_fid", help="registered encoder name")
    e.add_argument("--weights", help="encoder weights file, or 'random' (labelled as such)")
    e.add_argument("--device", help="torch device: cpu, cuda or cuda:N (default: the encoder's)")
    e.add_argument(
        "--mpp", type=number_at_least(0, above=True), default=0.5, help="read resolution in um/px"
    )
    e.add_argument(
        "--patch-size", type=int_at_least(1), default=224, help="patch side in read pixels"
    )
    e.add_argument("--stain-norm", choices=["macenko", "vahadane", "reinhard"],
                   help="normalise patches' stains before embedding (tiatoolbox; None: off)")  # fmt: skip
    e.add_argument("--stain-target", type=Path,
                   help="RGB tile to normalise to (None: tiatoolbox's reference H&E tile)")  # fmt: skip
    _engine_args(e)
    e.set_defaults(stage_func=run_embed)

    c = stages.add_parser("cluster", help="diverse patches -> phenotypes + merge tree", **fmt)
    c.add_argument("--store", required=True, type=Path, action="append", help="store (repeatable)")
    c.add_argument("--out", required=True, type=Path, help="clustering folder")
    c.add_argument("--samples-per-slide", type=int_at_least(1), default=1000,
                   help="patches drawn per slide for clustering")  # fmt: skip
    c.add_argument("--diversity", type=number_at_least(0, high=1), default=0.5,
                   help="share of the sample chosen by k-center greedy (rest: uniform)")  # fmt: skip
    c.add_argument(
        "--phenotypes", type=int_at_least(1), default=100, help="finest number of clusters"
    )
    c.add_argument("--levels", default="5,10,20,50,100", help="granularities, comma-separated")
    c.add_argument(
        "--coarse-k", type=int_at_least(1), default=10, help="clusters of the first k-means"
    )
    c.add_argument("--split-criterion", default="sse", choices=["sse", "variance", "size"],
                   help="score of a phenotype when deciding which to sub-cluster")  # fmt: skip
    c.add_argument("--split-threshold", type=number_at_least(0), default=1.0,
                   help="sub-cluster phenotypes scoring >= this x the mean score")  # fmt: skip
    c.add_argument("--fit-sample", type=int_at_least(1),
                   help="rows the k-means is fitted on (None: 256 per phenotype)")  # fmt: skip
    c.add_argument("--min-cluster-size", type=int_at_least(1), default=5,
                   help="fewest patches per phenotype (fewer patches: fewer phenotypes)")  # fmt: skip
    c.add_argument(
        "--seed", type=int_at_least(0), default=0, help="random seed of sampling and k-means"
    )
    c.add_argument("--kmeans-backend", default="htd", choices=["htd", "faiss"],
                   help="htd: hierarchical k-means with split-merge; faiss: one flat faiss "
                        "k-means (GPU where faiss has one; docs/scale.md)")  # fmt: skip
    c.add_argument("--workers", type=int_at_least(0), default=0,
                   help="processes sampling slides in parallel (0: this one)")  # fmt: skip
    add_progress_argument(c, old_quiet=True)
    c.set_defaults(stage_func=run_cluster)

    m = stages.add_parser("maps", help="write pseudo maps at every granularity", **fmt)
    _slides_args(m, required=False)
    m.add_argument("--clustering", required=True, type=Path, help="`cluster`'s output folder")
    m.add_argument("--out", required=True, type=Path, help="maps folder")
    m.add_argument("--store", type=Path, action="append", help="teacher path: stored embeddings")
    m.add_argument("--classifier", type=Path, help="student path: distilled classifier folder")
    m.set_defaults(stage_func=run_maps)

    d = stages.add_parser("distill", help="train the ViT-small phenotype classifier", **fmt)
    d.add_argument("slides", nargs="+", type=Path,
                   help="the slides embedded in the stores (files, folders or .txt lists)")  # fmt: skip
    d.add_argument("--store", required=True, type=Path, action="append",
                   help="embedding store (repeatable)")  # fmt: skip
    d.add_argument("--clustering", required=True, type=Path, help="`cluster`'s output folder")
    d.add_argument("--out", required=True, type=Path, help="classifier folder")
    d.add_argument(
        "--input-size", type=int_at_least(16), default=64, help="student input side (x16)"
    )
    d.add_argument("--arch", default="vit_small_patch16_224", help="timm ViT of the student")
    d.add_argument(
        "--depth", type=int_at_least(1), help="override the ViT depth (small test models)"
    )
    d.add_argument("--epochs", type=int_at_least(1), default=10, help="training epochs")
    d.add_argument(
        "--batch-size", type=int_at_least(1), default=64, help="patches per optimizer step"
    )
    d.add_argument(
        "--lr", type=number_at_least(0, above=True), default=5e-4, help="AdamW learning rate"
    )
    d.add_argument(
        "--val-fraction",
        type=number_at_least(0, above=True, high=1, below=True),
        default=0.2,
        help="held-out share of patches",
    )
    d.add_argument(
        "--block", type=int_at_least(1), default=8, help="held-out blocks of BLOCK x BLOCK cells"
    )
    d.add_argument("--holdout", default="auto", choices=["auto", "blocks", "slides"],
                   help="hold out whole slides or cell blocks with a margin (auto: slides "
                        "from 5 slides on)")  # fmt: skip
    d.add_argument(
        "--max-patches", type=int_at_least(1), default=200_000, help="training patches at most"
    )
    d.add_argument("--workers", type=int_at_least(0), default=0, help="DataLoader reader processes")
    d.add_argument(
        "--seed", type=int_at_least(0), default=0, help="random seed of the split and training"
    )
    add_progress_argument(d, old_quiet=True)
    d.set_defaults(stage_func=run_distill)
    for stage in (e, c, m, d):
        add_threads_argument(stage)


def _engine_args(p: argparse.ArgumentParser) -> None:
    """``embed``'s engine: this process (or ``accelerate launch``'s), or Dask distributed."""
    from htd_core.options import int_at_least, number_at_least

    g = p.add_argument_group("engine (docs/discovery.md, section 1)")
    g.add_argument("--engine", choices=["process", "dask"],
                   help="process: this process (or its share under accelerate launch); dask: "
                        "a Dask cluster plans and embeds (None: dask if --scheduler is given)")  # fmt: skip
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (None: a local cluster "
                        "of --local-workers processes)")  # fmt: skip
    g.add_argument("--local-workers", type=int_at_least(1), default=2,
                   help="worker processes of the local Dask cluster")  # fmt: skip
    g.add_argument("--connect-timeout", type=number_at_least(0, above=True), default=10.0,
                   help="seconds to wait for the scheduler and its first worker")  # fmt: skip
    g.add_argument("--retries", type=int_at_least(0), default=2,
                   help="times a failed task runs again, on another worker where possible")  # fmt: skip
    g.add_argument("--tiles-per-task", type=int_at_least(1), default=1024,
                   help="tile coordinates per Dask task (rounded up to a multiple of the batch)")  # fmt: skip
    g.add_argument("--task-threads", type=int_at_least(1), default=1,
                   help="torch CPU threads of each Dask task")  # fmt: skip


def _slides_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    from htd_core.options import int_at_least, number_at_least

    p.add_argument("slides", nargs="+" if required else "*", type=Path,
                   help="slide files, folders of slides, or .txt lists (one path per line)")  # fmt: skip
    p.add_argument(
        "--stride", type=int_at_least(1), help="grid cell side in read pixels (None: patch size)"
    )
    p.add_argument(
        "--min-tissue",
        type=number_at_least(0, high=1),
        default=0.25,
        help="tissue fraction of a cell",
    )
    p.add_argument(
        "--slide-mpp",
        type=number_at_least(0, above=True),
        help="um/px of slides whose metadata has none",
    )
    p.add_argument("--shard", default="0/1", help="i/n: this job's share of the slide list")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=32, help="patches per encoder batch"
    )
    p.add_argument("--workers", type=int_at_least(0), default=2, help="DataLoader reader processes")
    add_progress_argument(p, old_quiet=True)


def run(args: argparse.Namespace) -> int:
    """Run the chosen stage (with the thread policy of :mod:`htd_core.threads`)."""
    from htd_core.outputs import check_output, output_folder
    from htd_core.threads import check_device, configure_threads, report

    check_device(getattr(args, "device", None))
    kind, legacy = OUTPUTS.get(args.stage, (None, ()))
    # the jobs of one --shard i/n run write disjoint slides of one --out: each locks its part
    shard = parse_shard(args.shard) if getattr(args, "shard", None) else (0, 1)
    part = f"shard-{shard[0]}-of-{shard[1]}" if shard[1] > 1 else None
    engine = engine_options(args) if args.stage == "embed" else None
    if engine is not None and engine.scheduler is not None:  # before --out is touched
        from htd_plugins.discovery.engine import open_client

        with open_client(engine):
            pass
    state = process_state(args.device) if args.stage == "embed" else None
    if engine is not None and state.num_processes > 1:
        from htd_core.errors import InputError

        raise InputError("--engine dask runs from one process: run it without accelerate launch")
    ranks = state is not None and state.num_processes > 1
    if ranks and not state.is_main_process:
        state.wait_for_everyone()  # the main process checks, creates, marks and locks --out
    elif kind:
        check_output(args.out, kind, what="--out", legacy=legacy, part=part)  # before any work
    if ranks and state.is_main_process:
        from htd_core.outputs import start_output

        start_output(args.out, kind, what="--out", legacy=legacy, part=part)  # locked to the end
        state.wait_for_everyone()
    choice = configure_threads(args.threads, workload="large", device=getattr(args, "device", None))
    print(report(f"discover {args.stage}", choice), file=sys.stderr)
    if not kind or ranks:
        return int(args.stage_func(args) or 0)
    with output_folder(args.out, kind, what="--out", legacy=legacy, part=part):
        return int(args.stage_func(args) or 0)


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="pseudo semantic maps for unannotated slides",
        order=30,
    )
    registry.register("discover", command)
