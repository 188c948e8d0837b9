"""Does the PatchGAN term sharpen the shared autoencoder? Same data, steps and seed, with and
without it; the reconstruction FD of the held-out patches is the floor of every arm's FD.

Data: the GlaS experiment's splits (examples/experiments/glas.yaml at the budget's 64 px:
600 training patches from the 85 ``train_*`` images, 96 held-out ones from ``test*``).
Prints, per adversarial weight: held-out mean L1 (0-255), and the Frechet distance of the
held-out reconstructions to the held-out patches under the FID Inception and
EfficientNet-Lite0, with the wall time and the load average.

    python benchmarks/autoencoder_adversarial.py [--steps 1500] [--weights 0,0.5] [--start 750]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def held_out_l1(backbone, images: np.ndarray) -> float:
    """Mean absolute error (0-255) of the autoencoder's reconstructions of ``images``."""
    return float(np.abs(backbone.reconstruct(images).astype(np.float64) - images).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--weights", default="0,0.5", help="adversarial weights, comma-separated")
    parser.add_argument("--start", type=int, default=750, help="step the adversarial term starts")
    parser.add_argument("--budget", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from htd_core import create
    from htd_plugins.experiment import get_budget, load_experiment
    from htd_plugins.experiment.data import sample_splits

    budget = get_budget(args.budget)
    cfg = load_experiment(ROOT / "examples" / "experiments" / "glas.yaml")
    data = sample_splits(cfg.data, budget.image_size, budget.max_train, budget.n_test, args.seed)
    train = np.stack([s.image for s in data.train])
    test = np.stack([s.image for s in data.test])
    held_out = [
        type(s)(s.image, s.mask, s.class_map, {**s.meta, "split": "test"}) for s in data.test
    ]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for weight in (float(w) for w in args.weights.split(",")):
            # as the experiment's shared autoencoder: its first arm's backbone, the preset's
            # autoencoder training options (batch, learning rate, crops) but for these
            backbone = create("backbones", "controlnet_ldm", preset=budget.preset,
                              image_size=budget.image_size)  # fmt: skip
            start = time.perf_counter()
            summary = backbone.train_autoencoder(
                train, progress=False, steps=args.steps, seed=args.seed,
                adversarial_weight=weight, adversarial_start=args.start,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            # the frechet evaluator reconstructs with the backbone's autoencoder
            ev = create("evaluators", "frechet", cache_dir=Path(cache) / "fd", model=backbone)
            metrics = ev.evaluate(held_out, held_out[:2])  # only the reconstruction row is read
            fd = {k: round(e["fd_reconstruction"], 2) for k, e in metrics["encoders"].items()}
            rows.append({"adversarial_weight": weight, "start": args.start, "steps": args.steps,
                         "held_out_l1": round(held_out_l1(backbone, test), 2),
                         "reconstruction_fd": fd, "train_seconds": round(seconds, 1),
                         "final_loss": summary["final_loss"],
                         "load": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
