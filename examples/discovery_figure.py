"""Tissue discovery on the two real slides of ../shared/data/slides, and its figure.

Runs the whole pipeline (resumable: rerun to continue) into ``runs/discovery``:
embed (FID Inception, real ImageNet weights, 64 px patches at 2 um/px = 128 um fields; CMU
cells of 16 px, TCGA cells of 64 px), diversity sampling, hierarchical k-means to 100
phenotypes + Ward merge tree, pseudo maps at k in {5, 10, 20, 50, 100}; with ``--distill``
also the ViT-small student and its maps. Then draws ``examples/figures/discovery.png``: each
slide's thumbnail beside its pseudo maps at k = 5 and k = 20.

The TCGA slide has no mpp metadata: 2.0 um/px is passed (estimated from nucleus size, about
4-5 px for 8-10 um nuclei at level 0; the file is a downsampled re-encoding).

Run: ``python examples/discovery_figure.py [--distill]`` (about 40 min of CPU for the teacher
embeddings of ~3,150 patches on 2 cores; the figure alone takes seconds once they exist).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
READ_MPP, PATCH = 2.0, 64
SLIDES = {  # file -> (stride, slide mpp when the metadata has none)
    "CMU-1-Small-Region.svs": (16, None),
    "TCGA-CR-7395-01A-01-TS1.svs": (64, 2.0),
}


def run_pipeline(runs: Path, encoder_name: str, distill_epochs: int) -> None:
    """The documented command sequence (docs/discovery.md), through ``htd discover``."""
    from htd_core.cli import main as htd
    from htd_core.data import shared_data_dir

    slides = shared_data_dir(required=True) / "slides"
    store, phen = str(runs / "store"), str(runs / "phenotypes")
    embed = ["--encoder", encoder_name, "--mpp", str(READ_MPP), "--patch-size", str(PATCH),
             "--batch-size", "32", "--workers", "1", "--out", store]  # fmt: skip
    for name, (stride, slide_mpp) in SLIDES.items():
        mpp = ["--slide-mpp", str(slide_mpp)] if slide_mpp else []
        run(htd, ["discover", "embed", str(slides / name), "--stride", str(stride), *mpp, *embed])
    run(htd, ["discover", "cluster", "--store", store, "--out", phen])
    run(htd, ["discover", "maps", "--store", store, "--clustering", phen,
              "--out", str(runs / "maps")])  # fmt: skip
    if distill_epochs:
        run(htd, ["discover", "distill", *(str(slides / n) for n in SLIDES), "--store", store,
                  "--clustering", phen, "--out", str(runs / "student"),
                  "--epochs", str(distill_epochs)])  # fmt: skip
        for name, (stride, slide_mpp) in SLIDES.items():
            mpp = ["--slide-mpp", str(slide_mpp)] if slide_mpp else []
            run(htd, ["discover", "maps", str(slides / name), "--classifier",
                      str(runs / "student"), "--clustering", phen, "--stride", str(stride),
                      *mpp, "--out", str(runs / "maps_student")])  # fmt: skip


def run(htd, argv: list[str]) -> None:
    print("htd", " ".join(argv), flush=True)
    if htd(argv) != 0:
        raise SystemExit(f"htd {argv[0]} {argv[1]} failed")


def draw(runs: Path, out: Path, maps_dir: str = "maps") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from htd_core.data import shared_data_dir
    from htd_core.io import atomic_write_bytes
    from htd_plugins.discovery import level_class_map, read_map
    from htd_plugins.slides import Slide

    slides = shared_data_dir(required=True) / "slides"
    fig, axes = plt.subplots(len(SLIDES), 3, figsize=(13, 4.6 * len(SLIDES)))
    for row, (name, (_, slide_mpp)) in enumerate(SLIDES.items()):
        slide = Slide(slides / name, default_mpp=slide_mpp)
        axes[row, 0].imshow(slide.thumbnail(READ_MPP * 4))
        axes[row, 0].set_title(f"slide {slide.slide_id}\n(thumbnail)", fontsize=9)
        for col, k in enumerate((5, 20), start=1):
            mask, side = read_map(runs / maps_dir / f"k{k:03d}" / f"{slide.slide_id}.png")
            cm = level_class_map(k)
            rgb = cm.colorize(mask)
            rgb[mask == 255] = 255
            ds = side["downsample"]
            w, h = side["slide_dims"]
            ax = axes[row, col]
            ax.imshow(
                rgb, extent=(0, mask.shape[1] * ds, mask.shape[0] * ds, 0), interpolation="nearest"
            )
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            present = [i for i, f in enumerate(side["composition"].values()) if f > 0]
            ax.set_title(f"pseudo map k = {k} ({len(present)} phenotypes present; "
                         f"{side['grid_shape'][1]} x {side['grid_shape'][0]} cells)", fontsize=9)  # fmt: skip
            if k == 5:
                handles = [
                    Patch(color=np.asarray(cm.colors[i]) / 255, label=cm.names[i]) for i in present
                ]
                ax.legend(handles=handles, fontsize=7, loc="lower left", framealpha=0.8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    encoder = side["encoder"]
    fig.suptitle(f"Self-supervised tissue discovery ({side['source']}, {encoder} weights "
                 f"{side['weights_id'][:12]}): 100 phenotypes, Ward merge tree cut at k = 5 and 20",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(out, buf.getvalue())
    print(f"figure: {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "discovery")
    ap.add_argument("--encoder", default="inception_fid")
    ap.add_argument(
        "--distill", type=int, default=0, metavar="EPOCHS", help="train the student too"
    )
    ap.add_argument("--figure", type=Path, default=REPO / "examples" / "figures" / "discovery.png")
    ap.add_argument("--figure-only", action="store_true")
    args = ap.parse_args()
    if not args.figure_only:
        run_pipeline(args.runs, args.encoder, args.distill)
    draw(args.runs, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
