"""The embedding arm's step time against the crop arm's (issue "Synthetic tissue good enough
to train on", item 6: target within 1.3x), as the experiment trains them.

The arms of ``htd experiment`` (``htd_plugins.experiment.config.ARMS``: semantic map + crops
from the crop bank, placement ``outside``; the embedding arm gives the same draws as
EfficientNet-Lite0 embeddings of the whole bank crop, ``whole_crop``) and the embedding arm
as it was before (``embedding_placed``: the square placed from each crop, trimmed to its class
region), on an experiment file's ``cpu-quick`` training split at 64 px, on one shared KL
autoencoder, ``small`` preset, batch 16, 1 thread. The arms alternate in rounds of ``--steps``
optimizer steps (each fit continues the same model and builder, so the embedding cache warms
as in a run, and draws its batches and crops with the round as seed: a fit's draws are a pure
function of its seed and step, so rounds of one seed would replay round 1's crops and hit the
cache every time, a warm cache no run has); per round: s/step of each, the encoder's images
per step (its cache misses) and the ratios to the crop arm. The last rounds are the steady state of a long run; the
first, its cold start.

    python benchmarks/bench_embedding_arm.py --run runs/glas-cpu-quick [--steps 25] [--rounds 4]
    python benchmarks/bench_embedding_arm.py --run runs/wsss4luad-cpu \
        --experiment examples/experiments/wsss4luad.yaml

``--run``: an experiment folder on that file's data (its ``data/crop-bank.safetensors`` and
``autoencoder/``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--experiment", default=str(ROOT / "examples/experiments/glas.yaml"))
    args = parser.parse_args()

    import torch

    from htd_core import create
    from htd_core.config import ComponentSpec
    from htd_core.plugins import get_registry
    from htd_plugins.experiment import get_budget, load_experiment
    from htd_plugins.experiment.config import ARMS
    from htd_plugins.experiment.data import sample_splits

    torch.set_num_threads(1)
    run = Path(args.run)
    budget = get_budget("cpu-quick")
    cfg = load_experiment(Path(args.experiment))
    data = sample_splits(cfg.data, budget.image_size, budget.max_train, budget.n_test, 0)
    classes = list(data.train[0].class_map.names)
    reg = get_registry("condition_builders")
    placed = [b if b == "semantic_map" else {**b, "whole_crop": False}
              for b in ARMS["embedding"]["builders"]]  # fmt: skip
    specs = {"crop": ARMS["crop"]["builders"], "embedding": ARMS["embedding"]["builders"],
             "embedding_placed": placed}  # fmt: skip
    arms, encoded = {}, {}
    for name, builders in specs.items():
        parts = [ComponentSpec.parse(b, name).create(reg, {"classes": classes, "seed": 0,
                 "bank": str(run / "data" / "crop-bank.safetensors")})
                 for b in builders]  # fmt: skip
        builder = parts[0] + parts[1]
        backbone = create("backbones", "controlnet_ldm", preset="small", image_size=64,
                          autoencoder=str(run / "autoencoder"), device="cpu")  # fmt: skip
        arms[name] = (backbone, builder)
        if hasattr(parts[1], "encoder"):  # count the images the encoder runs on
            encoded[name] = _counted(parts[1].encoder)
    common = {"progress": False, "tensorboard": False, "batch_size": 16}
    for r in range(args.rounds):
        row = {"round": r + 1}
        for name, (backbone, builder) in arms.items():
            before = encoded[name][0] if name in encoded else 0
            summary = backbone.fit(data.train, builder, steps=args.steps, seed=r, **common)
            row[f"{name} s/step"] = round(1 / summary["steps_per_second"], 3)
            if name in encoded:
                row[f"{name} encoded/step"] = round((encoded[name][0] - before) / args.steps, 1)
        for name in encoded:
            row[f"{name} / crop"] = round(row[f"{name} s/step"] / row["crop s/step"], 2)
        row["load"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(row), flush=True)


def _counted(encoder) -> list[int]:
    """Wrap ``encoder.forward`` to count its images; returns the live counter ``[n]``."""
    count, forward = [0], encoder.forward

    def counting(pixels):
        count[0] += len(pixels)
        return forward(pixels)

    encoder.forward = counting
    return count


if __name__ == "__main__":
    main()
