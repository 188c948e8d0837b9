"""What pseudo maps are worth for training: heterogeneous windows and slide-specific phenotypes.

For every maps folder given (``htd discover maps`` output) and every slide of it, two numbers:

* **heterogeneous windows** (issue 15, item 2): of the training-size windows with at least half
  their area in tissue (on a grid of a quarter window), the fraction that passes the paper's
  20-80 % rule (two phenotypes each covering 20-80 % of the labelled area), at k = 5 and
  k = 20. Counted with the ``heterogeneous`` sampler's own planning on the pseudo map (and the
  ``entropy`` sampler with ``min_entropy=0, q=1`` for the tissue windows), so the number is
  exactly what sampling would accept. Window side: ``--window-um`` (default 128 and 256 um).
* **shared phenotypes** (item 3): how many of the k = 5 (and 10, 20) phenotypes cover at
  least ``--min-share`` (default 2 % and 5 %) of the tissue cells of *every* slide of the
  folder; a phenotype found on one slide only is slide-specific (often a lab's colour, not a
  tissue). And the **slide purity** at each level: every slide weighted to the same total, the
  share of a phenotype's cells that come from its main slide, averaged over phenotypes by mass
  (1 = every phenotype belongs to one slide; 1 / number of slides = perfectly mixed).

Run: ``python benchmarks/pseudo_map_measures.py --slides ../shared/data/slides --slide-mpp 2.0
runs/maps_a runs/maps_b`` (seconds per folder; no timing, so the machine's load does not matter).
Slides whose metadata has no mpp (the TCGA test slide) take ``--slide-mpp``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

READ_MPP = 2.0  # the windows are read at 2 um/px: 64 px = 128 um, 128 px = 256 um


def window_fractions(
    slide: Path, mask: Path, slide_mpp: float | None, window_um: float
) -> tuple[float, int]:
    """(fraction of tissue windows passing 20-80 %, number of tissue windows)."""
    from htd_core import create

    size = int(round(window_um / READ_MPP))
    common = dict(slide=str(slide), label_mask=str(mask), mpp=READ_MPP, patch_size=size,
                  stride=size // 4, min_labeled=0.5)  # fmt: skip
    if slide_mpp is not None:
        common["slide_mpp"] = slide_mpp
    tissue = create("patch_samplers", "entropy", min_entropy=0.0, q=1.0, **common).plan(0)
    mixed = create("patch_samplers", "heterogeneous", min_frac=0.2, max_frac=0.8,
                   **common).plan(0)  # fmt: skip
    return (mixed.accepted / tissue.accepted if tissue.accepted else 0.0), tissue.accepted


def level_shares(maps: Path, k: int) -> dict[str, list[float]]:
    """Slide id -> share of its tissue cells in each phenotype of level k (map sidecars)."""
    shares = {}
    for side in sorted((maps / f"k{k:03d}").glob("*.json")):
        if side.name != "classes.json" and "." not in side.stem:
            shares[side.stem] = list(json.loads(side.read_text())["composition"].values())
    return shares


def shared_phenotypes(shares: dict[str, list[float]], min_share: float) -> int:
    """Phenotypes covering >= ``min_share`` of every slide's tissue."""
    return int((np.asarray(list(shares.values())) >= min_share).all(axis=0).sum())


def slide_purity(shares: dict[str, list[float]]) -> float:
    """Mass-weighted mean share of a phenotype's (slide-balanced) cells on its main slide."""
    table = np.asarray(list(shares.values()))  # slides x phenotypes, rows sum to 1
    mass = table.sum(axis=0)
    used = mass > 0
    return float((table.max(axis=0)[used]).sum() / mass[used].sum())


def main() -> int:
    from htd_core.images import opaque_id

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("maps", nargs="+", type=Path, help="maps folders (htd discover maps --out)")
    ap.add_argument("--slides", type=Path, required=True, help="folder of the slides")
    ap.add_argument("--slide-mpp", type=float, help="um/px of slides without mpp metadata")
    ap.add_argument("--window-um", type=float, action="append", help="window side (repeatable)")
    ap.add_argument("--min-share", type=float, action="append", help="phenotype share (repeat.)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    windows = args.window_um or [128.0, 256.0]
    min_shares = args.min_share or [0.02, 0.05]
    files = {opaque_id(p): p for p in sorted(args.slides.iterdir()) if p.suffix == ".svs"}
    results: dict[str, dict] = {}
    for maps in args.maps:
        row: dict = {"windows": {}, "shared_k5": {}}
        for k in (5, 20):
            for png in sorted((maps / f"k{k:03d}").glob("*.png")):
                if "." in png.stem:  # a colour preview (<id>.preview.png)
                    continue
                slide = files[png.stem]
                mpp = None if _has_mpp(slide) else args.slide_mpp
                for w in windows:
                    frac, n = window_fractions(slide, png, mpp, w)
                    row["windows"][f"{slide.name[:4]} k={k} {w:g}um"] = [round(frac, 4), n]
                    print(f"{maps.name}: {slide.name[:4]} k={k:<3} window {w:g} um: "
                          f"{100 * frac:5.1f} % of {n} tissue windows pass 20-80 %")  # fmt: skip
        for k in (5, 10, 20):
            shares = level_shares(maps, k)
            for share in min_shares:
                count = shared_phenotypes(shares, share)
                row["shared_k5" if k == 5 else f"shared_k{k}"] = {
                    **row.get(f"shared_k{k}", {}), f">={share:g}": count}  # fmt: skip
                print(f"{maps.name}: {count} of {k} k={k} phenotypes cover >= {100 * share:g} % "
                      f"of every slide's tissue")  # fmt: skip
            row[f"purity_k{k}"] = round(slide_purity(shares), 3)
            print(f"{maps.name}: slide purity at k={k}: {row[f'purity_k{k}']:.3f}")
        shares = level_shares(maps, 5)
        row["k5_shares"] = {files[s].name[:4]: [round(v, 3) for v in f] for s, f in shares.items()}
        print(f"{maps.name}: k=5 shares per slide {row['k5_shares']}")
        results[maps.name] = row
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _has_mpp(slide: Path) -> bool:
    from htd_plugins.slides import Slide

    try:
        Slide(slide)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
