"""``htd evaluate``: score synthetic sets against a real set and write a report.

Sets are folders: an htd dataset (``manifest.csv`` + ``classes.json``, as ``htd sample`` and
``htd generate`` write), a tile folder of image + mask pairs (``images/`` + ``masks/``, the
layout of ``../shared/data/glas``; read by the ``tiles`` sampler), or ``images/`` alone (no
masks: enough for ``frechet`` and ``privacy``). Each synthetic set (``--synthetic NAME=DIR``,
repeatable: one per condition type) is evaluated against the real set by every evaluator.
Finished (evaluator, set) results are kept in ``OUT/partial/``: a rerun resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Frechet distance, DeepLabv3+ IoU and privacy audit of synthetic vs real sets",
        description="Run evaluators on a real set and one or more synthetic sets; write "
        "metrics.json, report.md and PNG figures to --out (docs/evaluation.md).",
    )
    p.add_argument(
        "--real", required=True, help="real set folder (dataset, tile folder or images/)"
    )
    p.add_argument(
        "--real-test", help="held-out real set (DeepLabv3+ test data, privacy calibration)"
    )
    p.add_argument(
        "--synthetic", action="append", default=[], metavar="[NAME=]DIR",
        help="synthetic set, repeatable; NAME labels it in the report (default: folder name)",
    )  # fmt: skip
    p.add_argument(
        "--evaluators", default="frechet", help="comma-separated names (default: frechet)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--encoders", help="encoders for frechet (comma-separated; default inception_fid)"
    )
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ENCODER=PATH",
        help="local weights of an encoder",
    )
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="EVALUATOR.KEY=VALUE",
        help="evaluator option (YAML value), e.g. deeplabv3plus.budget=tiny",
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
    p.add_argument("--limit", type=int, help="use at most this many images of each set")
    p.add_argument("--batch-size", type=int, default=32, help="samples read per step")
    p.add_argument("--device", default="cpu", help="torch device for encoders and models")
    p.add_argument("--cache-dir", help="real-set feature cache (default OUT/cache)")
    p.add_argument("--force", action="store_true", help="recompute results already in OUT/partial")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from htd_core.commands.sample import parse_options
    from htd_core.errors import ConfigError, InputError
    from htd_core.io import atomic_write_json
    from htd_core.plugins import create, registry
    from htd_core.registry import accepted_options
    from htd_plugins.evaluators.sets import Concat, batches, open_set

    if not args.synthetic:
        raise InputError("give at least one --synthetic [NAME=]DIR to evaluate")
    names = [n.strip() for n in args.evaluators.split(",") if n.strip()]
    reg = registry("evaluators")
    for n in names:
        reg.entry(n)  # unknown names list what exists
    options: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in parse_options(args.option, None).items():
        ev, dot, opt = key.partition(".")
        if not dot or ev not in options:
            raise ConfigError(
                f"-o {key}=...: write EVALUATOR.KEY=VALUE with EVALUATOR among {names}"
            )
        options[ev][opt] = value
    out = Path(args.out)
    classes = args.classes.split(",") if args.classes else None
    real_match = args.match_real or args.match
    real = open_set(args.real, match=real_match, limit=args.limit, classes=classes)
    test_match = args.match_real_test or real_match
    real_test = (
        open_set(args.real_test, match=test_match, limit=args.limit, classes=classes, split="test")
        if args.real_test
        else None
    )
    if not len(real):
        raise InputError(f"real set {args.real} is empty (match={real_match!r})")
    real_all = Concat([real, real_test] if real_test is not None else [real])
    named = _named_sets(args.synthetic)
    syn_match = _set_globs(args.match_synthetic, list(named), args.match)
    synthetic = {
        name: open_set(path, match=syn_match[name], limit=args.limit, classes=classes)
        for name, path in named.items()
    }
    for name, seq in synthetic.items():
        if not len(seq):
            raise InputError(f"synthetic set {name!r} ({seq.root}) is empty")
    weights = dict(w.split("=", 1) for w in args.weights if "=" in w)
    if "frechet" in options:
        options["frechet"].setdefault("cache_dir", args.cache_dir or str(out / "cache"))
        if args.encoders:
            options["frechet"].setdefault("encoders", args.encoders.split(","))
        listed = options["frechet"].get("encoders", ["inception_fid"])
        listed = [listed] if isinstance(listed, str) else listed
        mine = {k: v for k, v in weights.items() if k in listed}
        if mine:
            options["frechet"].setdefault("weights", mine)
    if "privacy" in options:
        enc = options["privacy"].get("encoder", (args.encoders or "inception_fid").split(",")[0])
        options["privacy"].setdefault("encoder", enc)
        if isinstance(enc, str) and enc in weights:
            options["privacy"].setdefault("weights", weights[enc])
    for n in names:
        accepted = accepted_options(reg.entry(n).factory)
        if accepted is None or "device" in accepted:
            options[n].setdefault("device", args.device)
    keys = ("real", "real_test", "match", "match_real", "match_real_test", "match_synthetic")
    keys += ("limit", "classes")
    state = [vars(args).get(k) for k in keys] + [len(real_all), options]
    fingerprint = hashlib.sha256(
        json.dumps(state, sort_keys=True, default=str).encode()
    ).hexdigest()
    results: dict[str, dict[str, Any]] = {n: {} for n in names}
    for ev_name in names:
        for set_name, seq in synthetic.items():
            partial = out / "partial" / f"{ev_name}--{set_name}.json"
            if partial.is_file() and not args.force:
                saved = json.loads(partial.read_text())
                if saved.get("fingerprint") == fingerprint and saved.get("synthetic") == [
                    str(seq.root),
                    len(seq),
                ]:
                    results[ev_name][set_name] = saved["metrics"]
                    continue
            opts = dict(options[ev_name])
            if ev_name == "privacy":
                opts.setdefault("output_dir", str(out / "figures" / f"privacy-{set_name}"))
            ev = create("evaluators", ev_name, **opts)
            ev.reset()
            total = len(real_all) + len(seq)
            with tqdm(total=total, desc=f"{ev_name} {set_name}", unit="img") as bar:
                for batch in batches(real_all, args.batch_size):
                    ev.update(real=batch)
                    bar.update(len(batch))
                for batch in batches(seq, args.batch_size):
                    ev.update(synthetic=batch)
                    bar.update(len(batch))
            metrics = ev.aggregate()
            atomic_write_json(
                partial,
                {
                    "fingerprint": fingerprint,
                    "synthetic": [str(seq.root), len(seq)],
                    "metrics": metrics,
                },
            )
            results[ev_name][set_name] = metrics
    from htd_plugins.evaluators.report import write_report

    inputs = {
        "real": str(args.real), "n_real": len(real), "real_test": args.real_test,
        "n_real_test": len(real_test) if real_test is not None else 0,
        "synthetic": {k: {"path": str(v.root), "n": len(v)} for k, v in synthetic.items()},
        "match_real": real_match, "match_real_test": test_match if args.real_test else None, "match_synthetic": syn_match,
        "evaluators": names, "options": options,
    }  # fmt: skip
    write_report(out, results, inputs=inputs, real=real_all, synthetic=synthetic)
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0
