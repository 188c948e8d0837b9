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


class Autoencoder:
    """The ``model`` the frechet evaluator reconstructs with (``reconstruct(images)``)."""

    def __init__(self, vae, factor: int) -> None:
        self.vae, self.factor = vae, factor

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        from htd_plugins.backbones.ldm.autoencoder import reconstruct_images

        return reconstruct_images(self.vae, images, self.factor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--weights", default="0,0.5", help="adversarial weights, comma-separated")
    parser.add_argument("--start", type=int, default=750, help="step the adversarial term starts")
    parser.add_argument("--budget", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from htd_core.plugins import create
    from htd_plugins.backbones.ldm.autoencoder import build_vae, reconstruction_error, train_vae
    from htd_plugins.backbones.ldm.presets import get_preset
    from htd_plugins.experiment import get_budget, load_experiment
    from htd_plugins.experiment.data import sample_splits

    budget = get_budget(args.budget)
    cfg = load_experiment(ROOT / "examples" / "experiments" / "glas.yaml")
    data = sample_splits(cfg.data, budget.image_size, budget.max_train, budget.n_test, args.seed)
    train = np.stack([s.image for s in data.train])
    test = np.stack([s.image for s in data.test])
    preset = get_preset(budget.preset)
    held_out = [
        type(s)(s.image, s.mask, s.class_map, {**s.meta, "split": "test"}) for s in data.test
    ]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for weight in (float(w) for w in args.weights.split(",")):
            vae = build_vae(preset.vae, budget.image_size, seed=args.seed)
            start = time.perf_counter()
            summary = train_vae(
                vae, train, steps=args.steps, batch_size=preset.train.get("batch_size", 16),
                learning_rate=preset.train.get("vae_learning_rate", 1e-3),
                crop_size=preset.train.get("vae_crop_size"), seed=args.seed,
                adversarial_weight=weight, adversarial_start=args.start,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            ev = create("evaluators", "frechet", cache_dir=Path(cache) / "fd",
                        model=Autoencoder(vae, preset.vae_factor))  # fmt: skip
            metrics = ev.evaluate(held_out, held_out[:2])  # only the reconstruction row is read
            fd = {k: round(e["fd_reconstruction"], 2) for k, e in metrics["encoders"].items()}
            rows.append({"adversarial_weight": weight, "start": args.start, "steps": args.steps,
                         "held_out_l1": round(reconstruction_error(vae, test), 2),
                         "reconstruction_fd": fd, "train_seconds": round(seconds, 1),
                         "final_loss": summary["final_loss"],
                         "load": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
