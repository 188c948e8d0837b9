"""The sets ``htd evaluate`` reads, from its arguments: real, held-out real and synthetic
folders with their globs, and the leakage guard between the held-out and synthetic sets
(see :mod:`.leakage`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def named_sets(specs: list[str]) -> dict[str, str]:
    """``--synthetic [NAME=]DIR`` specs as NAME -> DIR (NAME defaults to the folder name)."""
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


def set_globs(specs: list[str], names: list[str], default: str | None) -> dict[str, str | None]:
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


def open_sets(args: argparse.Namespace) -> dict[str, Any]:
    """The real, held-out real and synthetic sets, with the globs that chose their files."""
    from htd_core.errors import InputError
    from htd_plugins.evaluation.sets import Concat, open_set

    if not args.synthetic:
        raise InputError("give at least one --synthetic [NAME=]DIR to evaluate")
    classes = None
    if args.classes is not None:  # one rule for every class list (names once each)
        from htd_core.types import class_names

        classes = list(
            class_names([c.strip() for c in args.classes.split(",")], f"--classes {args.classes!r}")
        )
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
    named = named_sets(args.synthetic)
    syn_match = set_globs(args.match_synthetic, list(named), args.match)
    synthetic = {
        name: open_set(path, match=syn_match[name], limit=args.limit, classes=classes)
        for name, path in named.items()
    }
    for name, seq in synthetic.items():
        if not len(seq):
            raise InputError(f"synthetic set {name!r} ({seq.root}) is empty")
    return {
        "real": real, "real_test": real_test, "synthetic": synthetic,
        # held-out first: evaluators that treat it specially (frechet) meet it before the rest
        "real_all": Concat([real_test, real] if real_test is not None else [real]),
        "real_match": real_match, "test_match": test_match, "syn_match": syn_match,
    }  # fmt: skip


def check_leakage(sets: dict[str, Any], allow: bool) -> dict[str, dict[str, Any]]:
    """Refuse (or, when ``allow``, return) synthetic sets that use held-out sources."""
    from htd_core.leakage import find_overlap, held_out_sources, refuse_overlap

    if sets["real_test"] is None:
        return {}
    held = held_out_sources(sets["real_test"].metas())
    found = {}
    for name, seq in sets["synthetic"].items():
        overlap = find_overlap(seq.metas(), held)
        if overlap and not allow:
            refuse_overlap(name, overlap, len(seq), "training or scoring on it")
        if overlap:
            found[name] = {**overlap.to_dict(), "n": len(seq)}
    return found


def check_class_lists(sets: dict[str, Any], masks_needed: list[str]) -> None:
    """Refuse, before any feature, synthetic htd datasets whose ``classes.json`` differs from
    the real set's when an evaluator compares masks (``masks_needed`` names them): mask code
    ``i`` would mean another class in each set.

    Raises:
        InputError: naming both ``classes.json`` files, their lists and the evaluators.
    """
    from htd_core.dataset import read_class_map
    from htd_core.errors import InputError

    real_file = Path(sets["real"].root) / "classes.json"
    if not masks_needed or not real_file.is_file():
        return
    real = read_class_map(real_file).names
    for name, seq in sets["synthetic"].items():
        path = Path(seq.root) / "classes.json"
        if path.is_file() and (names := read_class_map(path).names) != real:
            raise InputError(
                f"synthetic set {name!r}: {path} lists classes {list(names)} but the real "
                f"set's {real_file} lists {list(real)}; {', '.join(masks_needed)} compare(s) "
                "masks, whose codes would mean other classes: score sets of one class list"
            )
