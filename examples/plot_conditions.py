"""Plot the dual condition of real samples: image, semantic map, and each class's crop channel.

Rows 1-3 are real tiles from ``../shared/data`` (training: crops cut from the tile's own image);
the last row is a layout alone (generation: crops drawn from a crop bank of other tiles). In
each crop panel the checkerboard marks pixels whose validity channel is 0, and the square's
outline (class colour) is where it is 1.

Run: ``python examples/plot_conditions.py [--out examples/figures/conditions.png]``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from htd_core import create
from htd_core.data import shared_data_dir
from htd_core.io import atomic_write_bytes
from htd_core.testing import real_tiles
from htd_core.types import CROP_PROVENANCE, TissueSample
from htd_plugins.condition_builders import CropBank


def pick(samples: list[TissueSample]) -> TissueSample:
    """The most heterogeneous sample: most classes holding >= 10%, then the most balanced."""

    def score(s: TissueSample) -> tuple[int, float]:
        fractions = [f for f in s.composition().values() if f > 0]
        return sum(f >= 0.1 for f in fractions), min(fractions)

    return max(samples, key=score)


def crop_panel(cond, name: str, size: tuple[int, int]) -> np.ndarray:
    """RGB view of C_i: crop pixels where V_i = 1, a grey checkerboard where V_i = 0."""
    rgb = ((cond.select(f"crop:{name}:").numpy().transpose(1, 2, 0) + 1) * 127.5).round()
    valid = cond.select(f"valid:{name}")[0].numpy().astype(bool)
    yy, xx = np.indices(size)
    board = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 235, 205).repeat(3, axis=2)
    return np.where(valid[..., None], rgb, board).astype(np.uint8)


def outline(ax, prov: dict | None, color: tuple[int, int, int]) -> None:
    from matplotlib.patches import Rectangle

    if prov and "placed_x" in prov:
        x, y, d = prov["placed_x"], prov["placed_y"], prov["placed_size"]
        edge = tuple(c / 255 for c in color)
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), d, d, fill=False, lw=2, ec=edge))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "figures" / "conditions.png"))
    args = parser.parse_args(argv)
    root = shared_data_dir(required=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lung = real_tiles(root, "wsss4luad_val", n=31, size=256)
    colon = real_tiles(root, "glas", n=40)
    node = real_tiles(root, "camelyon_mini", n=32, size=256)
    bank = CropBank.from_samples(lung[::2], per_sample=2)  # even tiles feed the bank
    layout_src = pick(lung[1::2])  # an odd tile's mask only: a user-given layout
    layout = TissueSample(None, layout_src.mask, layout_src.class_map, {"slide_id": "layout"})
    rows = [
        (
            "WSSS4LUAD lung (training)",
            pick(lung[::2]),
            create("condition_builders", "crop", placement="same"),
        ),
        (
            "GlaS colon (training, elsewhere)",
            pick(colon),
            create("condition_builders", "crop", placement="elsewhere"),
        ),
        (
            "CAMELYON lymph node (training)",
            pick(node),
            create("condition_builders", "crop", placement="same"),
        ),
        ("layout only (generation, bank)", layout, create("condition_builders", "crop", bank=bank)),
    ]
    ncols = 2 + max(len(s.class_map) for _, s, _ in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.3 * ncols, 2.5 * len(rows)))
    for r, (title, sample, builder) in enumerate(rows):
        cond = builder.build(sample, seed=r)
        prov = cond.meta[CROP_PROVENANCE]
        cm = sample.class_map
        blank = np.full((*sample.size, 3), 255, np.uint8)
        image = sample.image if sample.image is not None else blank
        axes[r, 0].imshow(image)
        axes[r, 0].set_title(title if sample.image is not None else "no image (layout)", fontsize=8)
        axes[r, 1].imshow(cm.colorize(sample.mask))
        axes[r, 1].set_title("semantic map M", fontsize=8)
        for i, name in enumerate(cm.names):
            ax = axes[r, 2 + i]
            ax.imshow(crop_panel(cond, name, sample.size))
            outline(ax, prov[name], cm.colors[i])
            outline(axes[r, 1], prov[name], (255, 255, 255))
            p = prov[name]
            note = "absent" if p is None else "too small" if "empty" in p else p["source"]
            note += f", d={p['placed_size']}" if p and "placed_size" in p else ""
            color = tuple(c / 255 for c in cm.colors[i])
            ax.set_title(f"C,V {name}\n({note})", fontsize=8, color=color)
        for c in range(2 + len(cm), ncols):
            axes[r, c].axis("off")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "Dual condition concat(M, C_1..C_K, V_1..V_K): one real crop per class; checkerboard = V_i 0",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
