"""``htd evaluate``: score synthetic sets against a real set and write a report.

Sets are folders: an htd dataset (``manifest.csv`` + ``classes.json``, as ``htd sample`` and
``htd generate`` write), a tile folder of image + mask pairs (``images/`` + ``masks/``, the
layout of ``../shared/data/glas``; read by the ``tiles`` sampler), or ``images/`` alone (no
masks: enough for evaluators that use images only). Each synthetic set (``--synthetic
NAME=DIR``, repeatable: one per condition type) is evaluated against the real set by every
evaluator named. Finished (evaluator, set) results are kept in ``OUT/partial/``: a rerun
resumes.

The command knows no evaluator: each declares the run-wide settings it takes
(:meth:`htd_core.Evaluator.run_options`: ``--device``, ``--encoders``, ``--weights``,
``--cache-dir``, its own ``OUT/figures/<evaluator>-<set>`` folder), whether it runs when no
``--evaluators`` are named, and its section of ``report.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from htd_core import hookimpl
from htd_core.interfaces.command import make_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``htd evaluate``."""
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
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--encoders",
        help="encoders for evaluators that take them (comma-separated; default: each one's own)",
    )
    p.add_argument(
        "--weights", action="append", default=[], metavar="ENCODER=PATH",
        help="local weights of an encoder, repeatable",
    )  # fmt: skip
    p.add_argument(
        "-o", "--option", action="append", default=[], metavar="EVALUATOR.KEY=VALUE",
        help="option of one evaluator (YAML value), repeatable",
    )  # fmt: skip
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
    p.add_argument("--limit", type=int, help="use at most this many images of each set")
    p.add_argument("--batch-size", type=int, default=32, help="samples read per step")
    p.add_argument("--device", default="cpu", help="torch device for encoders and models")
    p.add_argument("--cache-dir", help="folder of caches reused across runs (default OUT/cache)")
    p.add_argument("--force", action="store_true", help="recompute results already in OUT/partial")


def _named_sets(specs: list[str]) -> dict[str, str]:
    from htd_core.errors import InputError

    named: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if name in named:
            raise InputError(
                f"--synthetic name {name!r} is used twice: write NAME=DIR to tell them apart"
            )
        named[name] = path
    return named


def _set_globs(specs: list[str], names: list[str], default: str | None) -> dict[str, str | None]:
    """Per synthetic set glob: ``NAME=GLOB`` for one set, a bare ``GLOB`` for all."""
    from htd_core.errors import InputError

    globs: dict[str, str | None] = dict.fromkeys(names, default)
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep:
            globs = dict.fromkeys(names, spec)
        elif name not in globs:
            raise InputError(
                f"--match-synthetic {spec!r}: no synthetic set named {name!r} (sets: {names})"
            )
        else:
            globs[name] = pattern
    return globs


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


def _user_options(pairs: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``-o EVALUATOR.KEY=VALUE`` pairs, per evaluator."""
    from htd_core.config import parse_options
    from htd_core.errors import ConfigError

    options: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in parse_options(pairs, None).items():
        ev, dot, opt = key.partition(".")
        if not dot or ev not in options:
            raise ConfigError(
                f"-o {key}=...: write EVALUATOR.KEY=VALUE with EVALUATOR among {names}"
            )
        options[ev][opt] = value
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
    return RunSettings(device=args.device, encoders=encoders, weights=weights, cache_dir=cache_dir)


def _open_sets(args: argparse.Namespace) -> dict[str, Any]:
    """The real, held-out real and synthetic sets, with the globs that chose their files."""
    from htd_core.errors import InputError
    from htd_plugins.evaluators.reporting.sets import Concat, open_set

    if not args.synthetic:
        raise InputError("give at least one --synthetic [NAME=]DIR to evaluate")
    classes = args.classes.split(",") if args.classes else None
    real_match = args.match_real or args.match
    real = open_set(args.real, match=real_match, limit=args.limit, classes=classes)
    test_match = args.match_real_test or real_match
    real_test = None
    if args.real_test:
        real_test = open_set(
            args.real_test, match=test_match, limit=args.limit, classes=classes, split="test"
        )
    if not len(real):
        raise InputError(f"real set {args.real} is empty (match={real_match!r})")
    named = _named_sets(args.synthetic)
    syn_match = _set_globs(args.match_synthetic, list(named), args.match)
    synthetic = {
        name: open_set(path, match=syn_match[name], limit=args.limit, classes=classes)
        for name, path in named.items()
    }
    for name, seq in synthetic.items():
        if not len(seq):
            raise InputError(f"synthetic set {name!r} ({seq.root}) is empty")
    return {
        "real": real, "real_test": real_test, "synthetic": synthetic,
        "real_all": Concat([real, real_test] if real_test is not None else [real]),
        "real_match": real_match, "test_match": test_match, "syn_match": syn_match,
    }  # fmt: skip


def _evaluate_one(ev: Any, real: Any, synthetic: Any, batch_size: int, desc: str) -> dict:
    """Stream the real then the synthetic set through ``ev``; its metrics."""
    from tqdm import tqdm

    from htd_plugins.evaluators.reporting.sets import batches

    ev.reset()
    with tqdm(total=len(real) + len(synthetic), desc=desc, unit="img") as bar:
        for batch in batches(real, batch_size):
            ev.update(real=batch)
            bar.update(len(batch))
        for batch in batches(synthetic, batch_size):
            ev.update(synthetic=batch)
            bar.update(len(batch))
    return ev.aggregate()


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from htd_core.interfaces.evaluator import evaluator_class, evaluator_options
    from htd_core.io import atomic_write_json
    from htd_core.plugins import create, get_registry
    from htd_plugins.evaluators.reporting.report import write_report

    reg = get_registry("evaluators")
    names = _evaluator_names(args.evaluators, reg)
    user = _user_options(args.option, names)
    out = Path(args.out)
    sets = _open_sets(args)
    real_all, synthetic = sets["real_all"], sets["synthetic"]
    settings = _run_settings(args, out)
    factories = {n: reg.entry(n).factory for n in names}
    # what each evaluator is built with, less its per-set output folder (fingerprinted)
    resolved = {n: evaluator_options(factories[n], settings, user[n]) for n in names}
    keys = ("real", "real_test", "match", "match_real", "match_real_test", "match_synthetic")
    keys += ("limit", "classes")
    state = [vars(args).get(k) for k in keys] + [len(real_all), resolved]
    fingerprint = hashlib.sha256(
        json.dumps(state, sort_keys=True, default=str).encode()
    ).hexdigest()
    results: dict[str, dict[str, Any]] = {n: {} for n in names}
    output_dirs: dict[str, dict[str, Path]] = {n: {} for n in names}
    for ev_name in names:
        for set_name, seq in synthetic.items():
            folder = out / "figures" / f"{ev_name}-{set_name}"
            opts = evaluator_options(
                factories[ev_name], replace(settings, output_dir=folder), user[ev_name]
            )
            if opts.get("output_dir") is not None:
                output_dirs[ev_name][set_name] = Path(opts["output_dir"])
            partial = out / "partial" / f"{ev_name}--{set_name}.json"
            stamp = [str(seq.root), len(seq)]
            if partial.is_file() and not args.force:
                saved = json.loads(partial.read_text())
                if saved.get("fingerprint") == fingerprint and saved.get("synthetic") == stamp:
                    results[ev_name][set_name] = saved["metrics"]
                    continue
            ev = create("evaluators", ev_name, **opts)
            metrics = _evaluate_one(ev, real_all, seq, args.batch_size, f"{ev_name} {set_name}")
            atomic_write_json(
                partial, {"fingerprint": fingerprint, "synthetic": stamp, "metrics": metrics}
            )
            results[ev_name][set_name] = metrics
    real, real_test = sets["real"], sets["real_test"]
    inputs = {
        "real": str(args.real), "n_real": len(real), "real_test": args.real_test,
        "n_real_test": len(real_test) if real_test is not None else 0,
        "synthetic": {k: {"path": str(v.root), "n": len(v)} for k, v in synthetic.items()},
        "match_real": sets["real_match"],
        "match_real_test": sets["test_match"] if args.real_test else None,
        "match_synthetic": sets["syn_match"], "evaluators": names,
        "options": json.loads(json.dumps(resolved, default=str)),
    }  # fmt: skip
    write_report(
        out, results, inputs=inputs, real=real_all, synthetic=synthetic,
        evaluators={n: evaluator_class(factories[n]) for n in names}, output_dirs=output_dirs,
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
