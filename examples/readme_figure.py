"""The README's picture: semantic map | crops | generated | real, for a few held-out layouts.

    python examples/readme_figure.py --model runs/glas/model --layouts out/test \\
        --out docs/images/overview.png

``--model`` is a saved pipeline folder (``htd train``'s ``model/``), ``--layouts`` a dataset
folder (``htd sample``'s output) whose masks are the semantic maps and whose images give the
crops (cut from each layout's own image, as ``htd generate --dataset`` does) and the real
column. One layout is taken from each of ``--n`` source images (seeded), so the rows show
different glands, not four tiles of one image. The README's picture comes from the README's
longer path (GlaS, 64 px patches, ``examples/pipeline.yaml`` trained 30 minutes on one CPU
thread, 10 of them the autoencoder); any model and dataset folder work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from htd_core import HtdError, Pipeline, TissueSample
from htd_core.dataset import Dataset
from htd_core.threads import add_threads_argument, configure_threads

COLUMNS = ("semantic map", "crops", "generated", "real")


def pick_layouts(layouts: Dataset, n: int, seed: int = 0) -> list[TissueSample]:
    """``n`` layouts from ``n`` different source images (``slide_id``), seeded: of each source,
    the layout whose classes are the most balanced.

    Raises:
        InputError: fewer than ``n`` source images in ``layouts``.
    """
    from htd_core.errors import InputError

    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(layouts.rows):
        by_source.setdefault(row.get("slide_id") or row["image"], []).append(i)
    if len(by_source) < n:
        raise InputError(
            f"{layouts.root} holds layouts of {len(by_source)} source image(s); --n {n} needs "
            f"{n}: give a smaller --n or a larger dataset (htd sample --limit)"
        )
    names = sorted(by_source)
    chosen = np.random.default_rng(seed).choice(len(names), size=n, replace=False)
    picked = []
    for j in sorted(chosen):
        candidates = [layouts[i] for i in by_source[names[j]]]
        picked.append(max(candidates, key=lambda s: min(s.composition().values())))
    return picked


def draw(path: str | Path, layouts, conditions, generated, title: str | None = None) -> Path:
    """One row per layout: semantic map | crops | generated | real (a PNG written atomically)."""
    from htd_plugins.condition_builders import crop_view
    from htd_plugins.evaluators import save_grid

    rows = []
    for s, c, g in zip(layouts, conditions, generated, strict=True):
        views = (s.class_map.colorize(s.mask), crop_view(c, len(s.class_map)), g.image, s.image)
        rows.append(dict(zip(COLUMNS, views, strict=True)))
    return save_grid(path, rows, title=title, tile=1.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved pipeline folder (htd train's model/)")
    parser.add_argument("--layouts", required=True, help="dataset folder (htd sample's output)")
    parser.add_argument("--out", default="docs/images/overview.png", help="output PNG")
    parser.add_argument("--n", type=int, default=4, help="rows: one layout per source image")
    parser.add_argument("--seed", type=int, default=0, help="layout choice, crops and noise")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        if out.suffix.lower() != ".png" or out.is_dir():
            raise HtdError(f"--out {out}: give a .png file path")
        layouts = pick_layouts(Dataset(args.layouts), args.n, args.seed)  # checked before work
        pipe = Pipeline.from_pretrained(args.model)
        choice = configure_threads(args.threads)
        print(f"readme_figure: {choice.threads} CPU thread(s), {choice.reason}", file=sys.stderr)
        generated = pipe.generate(layouts, seed=args.seed)
        conditions = pipe.build_conditions(layouts, seed=args.seed)  # the crops it used
        out.parent.mkdir(parents=True, exist_ok=True)
        print(draw(out, layouts, conditions, generated))
    except HtdError as exc:
        print(f"readme_figure: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
