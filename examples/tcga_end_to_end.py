"""One unannotated TCGA slide -> pseudo maps -> a model trained with the curriculum -> synthetic
patches from held-out pseudo maps; a figure and a check that the k = 100 channels were trained.

Runs the command sequence of docs/discovery.md ("End to end: one unannotated TCGA slide"),
resumably, into ``runs/tcga``:

1. teacher embeddings (FID Inception, real weights; 64 px at 4 um/px on a 64 px grid),
2. 100 phenotypes + merge tree, teacher maps (256 um cells),
3. the distilled ViT-small student and its finer maps (stride 16 px: 64 um cells),
4. ``htd train examples/tcga_curriculum.yaml``: controlnet_ldm ``small`` on the most diverse
   windows of the left 65 % of the slide, k'(t) from 5 to 100 phenotypes over 60 steps,
5. ``htd sample``: held-out layouts, windows of the right 35 % (no pixel shared with training),
6. ``htd generate`` from those layouts (k = 100 maps).

Then (``--figure-only`` starts here) the same layouts are also generated re-expressed at k = 5
(the curriculum's coarsening: each class written as its k = 5 group, same seeds), and measured:

* **differs**: mean absolute pixel difference between the k = 100 and the k = 5 image of a
  layout (same noise), against the difference between two k = 100 images of it (other noise);
* **follows the k = 100 map**: for every pair of k = 100 phenotypes that share a k = 5 group in
  a layout, the colour difference of their regions in the generated image against the colour
  difference of the two phenotypes in the real training patches (Pearson r over the pairs'
  RGB components). Only the k = 100 condition carries that contrast (at k = 5 both regions are
  one class), so r > 0 at k = 100 and r ~ 0 at k = 5 show the k = 100 channels were trained;
  the held-out real patches give the ceiling.

Writes ``runs/tcga/measure.json`` and ``examples/figures/tcga_end_to_end.png`` (slide thumbnail |
pseudo map k = 5 | k = 20 | training patches | synthetic at k = 100 and k = 5).
About 30 minutes on 2 busy CPU cores (the teacher: 8 of them; with ``--store`` given an existing
store of the same settings it is skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SLIDE = "TCGA-CR-7395-01A-01-TS1.svs"
CONFIG = REPO / "examples" / "tcga_curriculum.yaml"
HELD_OUT = "[0.65,0.0,1.0,1.0]"
N_LAYOUTS = 16


def run_pipeline(runs: Path, store: Path | None) -> None:
    """The documented command sequence (docs/discovery.md), through ``htd``."""
    from htd_core.cli import main as htd
    from htd_core.data import shared_data_dir
    from htd_core.images import opaque_id

    slide = str(shared_data_dir(required=True) / "slides" / SLIDE)
    r = {k: str(runs / k) for k in ("store", "phenotypes", "maps_teacher", "student", "maps",
                                    "heldout", "synthetic", "train")}  # fmt: skip
    if store is not None and not (runs / "store").exists():  # the same teacher run, made before
        shutil.copytree(store, runs / "store")
    grid = ["--slide-mpp", "2.0", "--workers", "1", "--no-progress"]
    run(htd, ["discover", "embed", slide, "--mpp", "4.0", "--patch-size", "64", *grid,
              "--out", r["store"]])  # fmt: skip
    run(
        htd,
        ["discover", "cluster", "--store", r["store"], "--out", r["phenotypes"], "--no-progress"],
    )
    run(htd, ["discover", "maps", "--store", r["store"], "--clustering", r["phenotypes"],
              "--out", r["maps_teacher"], "--no-progress"])  # fmt: skip
    run(htd, ["discover", "distill", slide, "--store", r["store"], "--clustering",
              r["phenotypes"], "--out", r["student"], "--epochs", "8", "--no-progress"])  # fmt: skip
    run(htd, ["discover", "maps", slide, "--classifier", r["student"], "--clustering",
              r["phenotypes"], "--stride", "16", *grid, "--out", r["maps"]])  # fmt: skip
    run(htd, ["train", str(CONFIG)])
    k100 = runs / "maps" / "k100" / f"{opaque_id(SLIDE)}.png"
    run(htd, ["sample", "entropy", "--out", r["heldout"], "-o", f"slide={slide}", "-o", "slide_mpp=2.0",
              "-o", f"label_mask={k100}", "-o", "mpp=4.0", "-o", "patch_size=64", "-o",
              "stride=32", "-o", "q=0.5", "-o", "max_overlap=0.0", "-o", f"region={HELD_OUT}",
              "--limit", str(N_LAYOUTS)])  # fmt: skip
    run(htd, ["generate", str(runs / "train" / "model"), "--out", r["synthetic"], "--dataset",
              r["heldout"], "--seed", "0"])  # fmt: skip


def run(htd, argv: list[str]) -> None:
    print("htd", " ".join(argv), flush=True)
    if htd(argv) != 0:
        raise SystemExit(f"htd {argv[0]} failed")


def pair_contrasts(images, masks, groups, reference, min_px: int = 40):
    """Per pair of k=100 classes sharing a k=5 group in a layout: (generated RGB difference,
    reference RGB difference), both 3-vectors."""
    gen, ref = [], []
    for image, mask in zip(images, masks, strict=True):
        present = [c for c in np.unique(mask) if c < len(groups) and (mask == c).sum() >= min_px]
        means = {c: image[mask == c].reshape(-1, 3).mean(0) for c in present}
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                if groups[a] == groups[b] and not np.isnan(reference[[a, b]]).any():
                    gen.append(means[a] - means[b])
                    ref.append(reference[a] - reference[b])
    return np.asarray(gen).reshape(-1, 3), np.asarray(ref).reshape(-1, 3)


def measure(runs: Path) -> dict:
    """Generate the held-out layouts at k = 5 too and compute the statistics of the docstring."""
    from htd_core import Pipeline
    from htd_core.dataset import Dataset

    layouts = list(Dataset(runs / "heldout"))
    synthetic = list(Dataset(runs / "synthetic"))
    pipe = Pipeline.from_config(CONFIG)
    curriculum = pipe.sampler
    coarse = [
        type(s)(s.image, curriculum.coarsen_mask(s.mask, 5), curriculum.class_map, s.meta)
        for s in layouts
    ]
    model = Pipeline.from_pretrained(runs / "train" / "model")
    at5 = [s.image for s in model.generate(coarse, seed=0)]
    other = [s.image for s in model.generate(layouts[:8], seed=1000)]  # other noise, k = 100
    at100 = [s.image for s in synthetic]
    masks = [s.mask for s in layouts]
    train = list(curriculum)  # the training patches at k = 100
    k = len(curriculum.class_map)
    sums, counts = np.zeros((k, 3)), np.zeros(k)
    for s in train:
        for c in np.unique(s.mask[s.mask < k]):
            sums[c] += s.image[s.mask == c].reshape(-1, 3).sum(0)
            counts[c] += (s.mask == c).sum()
    reference = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)
    groups = curriculum.coarsen_mask(np.arange(k, dtype=np.uint8), 5)

    def r_of(images):
        g, f = pair_contrasts(images, masks, groups, reference)
        return float(np.corrcoef(g.ravel(), f.ravel())[0, 1]) if len(g) > 2 else float("nan"), len(
            g
        )

    def diff(a, b) -> float:
        return float(
            np.mean([np.abs(x.astype(float) - y).mean() for x, y in zip(a, b, strict=True)])
        )

    result = {
        "layouts": len(layouts),
        "train_patches": len(train),
        "pixel_diff_k100_vs_k5_same_noise": diff(at100, at5),
        "pixel_diff_k100_vs_k100_other_noise": diff(at100[:8], other),
        "contrast_r_k100": r_of(at100),
        "contrast_r_k5": r_of(at5),
        "contrast_r_real_heldout": r_of([s.image for s in layouts]),
    }
    out = runs / "measure.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return {**result, "at5": at5, "at100": at100, "train": train}


def draw(runs: Path, result: dict, figure: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from htd_core.data import shared_data_dir
    from htd_core.dataset import Dataset
    from htd_core.io import atomic_write_bytes
    from htd_plugins.discovery import level_class_map, read_map
    from htd_plugins.slides import Slide

    slide = Slide(shared_data_dir(required=True) / "slides" / SLIDE, default_mpp=2.0)
    layouts = list(Dataset(runs / "heldout"))
    fig = plt.figure(figsize=(15, 11))
    top = fig.add_gridspec(2, 3, height_ratios=[1, 1.5], top=0.94, bottom=0.01, left=0.1,
                           right=0.99, hspace=0.1, wspace=0.05)  # fmt: skip
    ax = fig.add_subplot(top[0, 0])
    ax.imshow(slide.thumbnail(8.0))
    w, h = slide.dimensions
    ax.axvline(0.65 * w / 4, color="k", ls="--", lw=1)  # thumbnail at 8 um/px = level-0 / 4
    ax.set_title(f"slide {slide.slide_id} (no annotation)\ntrain left | held out right", fontsize=9)
    for col, k in ((1, 5), (2, 20)):
        mask, side = read_map(runs / "maps" / f"k{k:03d}" / f"{slide.slide_id}.png")
        rgb = level_class_map(k).colorize(mask)
        rgb[mask == 255] = 255
        ax = fig.add_subplot(top[0, col])
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"pseudo map k = {k} (student, {side['grid_shape'][1]} x "
                     f"{side['grid_shape'][0]} cells of {side['map_mpp']:g} um)", fontsize=9)  # fmt: skip
    n = 8
    step = max(1, len(result["train"]) // n)  # training patches from across the ranking
    rows = [("training patches\n(left part)", [s.image for s in result["train"][::step][:n]]),
            ("held-out real\n(right part)", [s.image for s in layouts[:n]]),
            ("its pseudo map\nk = 100", [level_class_map(100).colorize(s.mask) for s in layouts[:n]]),
            ("synthetic\nfrom k = 100", result["at100"][:n]),
            ("synthetic from the\nsame map at k = 5", result["at5"][:n])]  # fmt: skip
    grid = top[1, :].subgridspec(len(rows), n, wspace=0.03, hspace=0.05)
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    for ax in fig.axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"One unannotated TCGA slide -> 100 phenotypes -> curriculum-trained controlnet_ldm (small); "
        f"k=100 vs k=5 contrast r = {result['contrast_r_k100'][0]:.2f} vs "
        f"{result['contrast_r_k5'][0]:.2f} (real held-out {result['contrast_r_real_heldout'][0]:.2f})",
        fontsize=10,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(figure, buf.getvalue())
    print(f"figure: {figure}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "tcga")
    ap.add_argument("--store", type=Path, help="an existing teacher store of the same settings")
    ap.add_argument(
        "--figure", type=Path, default=REPO / "examples" / "figures" / "tcga_end_to_end.png"
    )
    ap.add_argument("--figure-only", action="store_true", help="skip the commands (they resume)")
    args = ap.parse_args()
    if args.runs.resolve() != (REPO / "runs" / "tcga").resolve():
        raise SystemExit("--runs must be runs/tcga: examples/tcga_curriculum.yaml names its paths")
    os.chdir(REPO)  # the YAML's paths are relative to the repository root
    if not args.figure_only:
        run_pipeline(args.runs, args.store)
    draw(args.runs, measure(args.runs), args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
