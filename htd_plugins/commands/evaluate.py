"""``htd evaluate``: score synthetic sets against a real set and write a report.

Sets are folders: an htd dataset (``manifest.csv`` + ``classes.json``, as ``htd sample`` and
``htd generate`` write), a tile folder of image + mask pairs (``images/`` + ``masks/``, the
layout of ``../shared/data/glas``; read by the ``tiles`` sampler), or ``images/`` alone (no
masks: enough for evaluators that use images only). Each synthetic set (``--synthetic
NAME=DIR``, repeatable: one per condition type) is evaluated against the real set by every
evaluator named, through the one evaluation driver (:mod:`htd_core.evaluation`). Finished
(evaluator, set) results are kept in ``OUT/partial/``, keyed by the content of every set (each
file's name, size and modification time) and the options: a rerun resumes, and a set
rewritten with other images is scored afresh.

Leakage guard: with a held-out set (``--real-test``), a synthetic set whose samples were
generated from held-out layouts or with crops cut from held-out images (their recorded
``layout_source_id`` / ``crop_source_ids``) is refused, naming the shared sources, since it
would put the test images into training and into the FD comparison; ``--allow-overlap``
evaluates it anyway and records the overlap in the report.

The command knows no evaluator: each declares the run-wide settings it takes
(:meth:`htd_core.Evaluator.run_options`: ``--device``, ``--encoders``, ``--weights``,
``--cache-dir``, ``--model``, ``--allow-overlap``, its own ``OUT/figures/<evaluator>-<set>``
folder), whether it runs when no ``--evaluators`` are named, and its section of ``report.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.interfaces.command import make_command

KIND = "evaluation"  # output kind (htd_core.outputs): --out is new, empty or an evaluation


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd evaluate``."""
    from htd_core import cli_options as co
    from htd_core.options import int_at_least

    p.add_argument(
        "--real", required=True, help="real set folder (dataset, tile folder or images/)"
    )
    p.add_argument(
        "--real-test",
        help="held-out real set (meta split=test: test data or calibration of evaluators)",
    )
    p.add_argument(
        "--synthetic", action="append", default=[], metavar="[NAME=]DIR",
        help="synthetic set, repeatable; NAME labels it in the report (default: folder name)",
    )  # fmt: skip
    p.add_argument(
        "--evaluators",
        help="comma-separated registered names (default: those marked to run by default)",
    )
    co.add_output_argument(p, "output folder (report.md, metrics.json, figures/)")
    p.add_argument(
        "--encoders",
        help="encoders for evaluators that take them (comma-separated; default: each one's own)",
    )
    p.add_argument(
        "--weights", action="append", default=[], metavar="ENCODER=PATH",
        help="local weights of an encoder, repeatable",
    )  # fmt: skip
    co.add_component_options(
        p,
        "an evaluator: EVALUATOR.KEY, or a bare KEY when one evaluator run takes it",
        "-o deeplabv3plus.budget=tiny -o frechet.kid=true",
    )
    p.add_argument(
        "--match", help="only files whose name matches this glob, in every set (e.g. 'train_*')"
    )
    p.add_argument("--match-real", help="glob for the real set only (overrides --match)")
    p.add_argument("--match-real-test", help="glob for the held-out real set (default: as real)")
    p.add_argument(
        "--match-synthetic", action="append", default=[], metavar="[NAME=]GLOB",
        help="glob for synthetic sets (overrides --match); NAME=GLOB for one set; repeatable",
    )  # fmt: skip
    p.add_argument(
        "--classes",
        help="class names of tile folders that are not presets (comma-separated, mask-code order)",
    )
    p.add_argument(
        "--limit", type=int_at_least(1),
        help="use at most this many images of each set: a seeded sample spread over its source "
        "images (one of each in turn), not the first files",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int_at_least(1), default=32, help="samples read per step")
    p.add_argument("--cache-dir", help="folder of caches reused across runs (default OUT/cache)")
    p.add_argument("--force", action="store_true", help="recompute results already in OUT/partial")
    p.add_argument(
        "--model",
        help="saved pipeline folder (htd train's model/): evaluators that measure the model "
        "use it (frechet: FD of the held-out images' autoencoder reconstructions)",
    )
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="evaluate synthetic sets generated from held-out layouts or crops anyway (the "
        "report records the overlap) instead of refusing them",
    )
    co.add_compute_arguments(
        p, device_default="cpu", device_help="of encoders and models; default cpu"
    )
    co.add_progress_argument(p)


def _evaluator_names(spec: str | None, reg: Any) -> list[str]:
    """Names from ``--evaluators``, else every registered evaluator marked ``run_by_default``."""
    from htd_core.errors import ConfigError
    from htd_core.interfaces.evaluator import evaluator_class

    if spec is None:
        names = [e.name for e in reg.entries() if evaluator_class(e.factory).run_by_default]
        if not names:
            raise ConfigError(
                f"no evaluator runs by default: name some with --evaluators (registered: "
                f"{', '.join(reg.names()) or 'none'})"
            )
        return names
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not names:
        raise ConfigError("--evaluators is empty: give comma-separated evaluator names")
    for n in names:
        reg.entry(n)  # unknown names list what exists
    return names


def _user_options(pairs: list[str], names: list[str], reg: Any) -> dict[str, dict[str, Any]]:
    """``-o EVALUATOR.KEY=VALUE`` pairs, per evaluator; a bare ``KEY`` goes to the one
    evaluator of the run that takes it."""
    from htd_core.config import parse_options
    from htd_core.errors import ConfigError
    from htd_core.registry import accepted_options

    options: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in parse_options(pairs, None).items():
        ev, dot, opt = key.partition(".")
        if dot and ev in options:
            options[ev][opt] = value
            continue
        takers = [n for n in names if key in (accepted_options(reg.entry(n).factory) or ())]
        if dot or len(takers) != 1:
            which = f" ({', '.join(takers)} all take {key!r})" if len(takers) > 1 else ""
            raise ConfigError(
                f"-o {key}=...: write EVALUATOR.KEY=VALUE with EVALUATOR among {names}{which}"
            )
        options[takers[0]][key] = value
    return options


def _run_settings(args: argparse.Namespace, out: Path) -> Any:
    """The run-wide settings offered to every evaluator (``--device``, ``--encoders``...)."""
    from htd_core.errors import InputError
    from htd_core.interfaces.evaluator import RunSettings

    weights = {}
    for spec in args.weights:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--weights {spec!r}: write ENCODER=PATH")
        weights[name] = path
    encoders = tuple(e.strip() for e in (args.encoders or "").split(",") if e.strip())
    cache_dir = Path(args.cache_dir) if args.cache_dir else out / "cache"
    return RunSettings(
        device=args.device, encoders=encoders, weights=weights, cache_dir=cache_dir,
        model=Path(args.model) if args.model else None, allow_overlap=args.allow_overlap,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from htd_core.errors import InputError
    from htd_core.evaluation import EvaluationDriver, EvaluatorRun
    from htd_core.outputs import check_output, holds_more_than, output_folder
    from htd_core.plugins import get_registry
    from htd_core.threads import check_device, configure_threads, report
    from htd_plugins.evaluation import check_class_lists, check_leakage, open_sets, write_report

    check_device(args.device)
    reg = get_registry("evaluators")
    names = _evaluator_names(args.evaluators, reg)
    user = _user_options(args.option, names, reg)
    out = Path(args.out)
    check_output(out, KIND, what="--out", legacy=("partial",))  # before any set is read
    if args.cache_dir and Path(args.cache_dir).is_file():
        raise InputError(f"--cache-dir {args.cache_dir} is a file: give a folder")
    sets = open_sets(args)
    overlaps = check_leakage(sets, args.allow_overlap)
    masks = [n for n in names if getattr(reg.entry(n).factory, "needs_masks", None)]
    check_class_lists(sets, masks)  # each classes.json named, before any feature
    model_id = None
    if args.model:
        from htd_core.pipeline_files import pipeline_id

        model_id = pipeline_id(args.model)  # a saved pipeline? and its content, for the keys
    choice = configure_threads(args.threads, workload="large", device=args.device)
    print(report("evaluate", choice), file=sys.stderr)
    real_all, synthetic = sets["real_all"], sets["synthetic"]
    driver = EvaluationDriver(
        [EvaluatorRun(n, user[n]) for n in names], settings=_run_settings(args, out),
        store=out / "partial", figures_dir=out / "figures", batch_size=args.batch_size,
        force=args.force, progress=not args.no_progress, log=lambda text: print(f"htd evaluate: {text}", file=sys.stderr),
    )  # fmt: skip
    driver.check()  # every evaluator option is checked before any feature is computed
    keys = ("real", "real_test", "match", "match_real", "match_real_test", "match_synthetic")
    state = [vars(args).get(k) for k in (*keys, "limit", "classes")] + [model_id]
    # locked for the run; a new --out that fails before any result is removed whole
    with output_folder(out, KIND, what="--out", legacy=("partial",), has_results=holds_more_than()):
        results = driver.run(real_all, synthetic, extra=state)
        real, real_test = sets["real"], sets["real_test"]
        inputs = {
            "real": str(args.real), "n_real": len(real), "real_test": args.real_test,
            "n_real_test": len(real_test) if real_test is not None else 0,
            "synthetic": {k: {"path": str(v.root), "n": len(v)} for k, v in synthetic.items()},
            "match_real": sets["real_match"],
            "match_real_test": sets["test_match"] if args.real_test else None,
            "match_synthetic": sets["syn_match"], "evaluators": names,
            "options": driver.resolved_options(),
            "model": {"path": str(args.model), "id": model_id} if args.model else None,
            "overlap": overlaps,
        }  # fmt: skip
        write_report(
            out, results, inputs=inputs, real=real_all, synthetic=synthetic,
            evaluators=driver.classes(), output_dirs=driver.output_dirs(),
        )  # fmt: skip
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0


@hookimpl
def htd_register_commands(registry) -> None:
    command = make_command(
        add_arguments,
        run,
        help="score synthetic sets against a real set with registered evaluators",
        description=(
            "Run evaluators on a real set and one or more synthetic sets; write metrics.json, "
            "report.md and PNG figures to --out (docs/evaluation.md). `htd plugins` lists the "
            "evaluators."
        ),
        order=70,
    )
    registry.register("evaluate", command)
