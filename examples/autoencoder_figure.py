"""What each autoencoder keeps of real tissue: held-out patches and their round trips.

Columns: the real patch, then its reconstruction by each autoencoder folder given (a KL
autoencoder ``htd train-vae`` or an experiment wrote, TAEF2's weights, a fine-tuned TAEF2...),
for ``--n`` held-out patches of an experiment's split (one per source image, seeded), at
``--size`` px. Every generated image is decoded by one of these, so this is the ceiling of
what a model on it can show.

    python examples/autoencoder_figure.py --experiment examples/experiments/glas.yaml \
        --size 64 --autoencoder "KL (trained here)=runs/glas-cpu-quick/autoencoder" \
        --autoencoder "TAEF2=../shared/weights/taef2" --out docs/images/autoencoders.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(ROOT / "examples/experiments/glas.yaml"))
    parser.add_argument("--budget", default="cpu-quick")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--autoencoder", action="append", required=True, help="LABEL=FOLDER")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    choices = []
    for item in args.autoencoder:
        label, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            print(f"--autoencoder {item!r}: give LABEL=FOLDER with an existing folder",
                  file=sys.stderr)  # fmt: skip
            return 2

    import torch
    from PIL import Image, ImageDraw

    from htd_plugins.backbones import calibrate, load_autoencoder
    from htd_plugins.experiment import get_budget, load_experiment, sample_splits

    torch.set_num_threads(1)
    budget = get_budget(args.budget)
    cfg = load_experiment(args.experiment)
    data = sample_splits(cfg.data, args.size, budget.max_train, budget.n_test, 0)
    by_source: dict[str, np.ndarray] = {}
    for s in data.test:
        by_source.setdefault(str(s.meta.get("slide_id") or s.meta.get("source")), s.image)
    keys = sorted(by_source)
    pick = np.random.default_rng(0).permutation(len(keys))[: args.n]
    real = np.stack([by_source[keys[i]] for i in sorted(pick)])
    train = np.stack([s.image for s in data.train])
    for item in args.autoencoder:
        label, _, folder = item.partition("=")
        ae = load_autoencoder(folder).frozen("cpu")
        calibrate(ae, train)
        choices.append((label, ae.reconstruct(real)))
    columns = [("real (held-out)", real), *choices]
    side, pad, head = max(args.size, 96), 6, 34
    sheet = Image.new("RGB", (pad + len(columns) * (side + pad), head + len(real) * (side + pad)),
                      "white")  # fmt: skip
    draw = ImageDraw.Draw(sheet)
    for c, (label, images) in enumerate(columns):
        x = pad + c * (side + pad)
        draw.text((x, 4), label[:22], fill=(0, 0, 0))
        if c:
            l1 = float(np.abs(images.astype(np.float64) - real).mean())
            draw.text((x, 18), f"mean L1 {l1:.1f}/255", fill=(90, 90, 90))
        for r, image in enumerate(images):
            tile = Image.fromarray(image).resize((side, side), Image.NEAREST)
            sheet.paste(tile, (x, head + r * (side + pad)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(out)
    print(f"wrote {out} ({len(real)} held-out patches x {len(columns)} columns, {args.size} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
