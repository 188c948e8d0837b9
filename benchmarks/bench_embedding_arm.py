"""The embedding arm's step time against the crop arm's (issue "Synthetic tissue good enough
to train on", item 6: target within 1.3x), as the experiment trains them.

Both arms of ``htd experiment`` (``htd_plugins.experiment.config.ARMS``: semantic map + crops
from the crop bank, placement ``outside``; the embedding arm gives the same crops as
EfficientNet-Lite0 embeddings, cached per crop) on the GlaS ``cpu-quick`` training split at
64 px, on one shared KL autoencoder, ``small`` preset, batch 16, 1 thread. The arms alternate in
rounds of ``--steps`` optimizer steps (each fit continues the same model and builder, so the
embedding cache warms as in a run); per round: s/step of each and the ratio. The last rounds
are the steady state of a long run; the first, its cold start.

    python benchmarks/bench_embedding_arm.py --run runs/glas-cpu-quick [--steps 25] [--rounds 4]

``--run``: an experiment folder on the GlaS ``cpu-quick`` data (its ``data/crop-bank.safetensors``
and ``autoencoder/``).
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
    cfg = load_experiment(ROOT / "examples" / "experiments" / "glas.yaml")
    data = sample_splits(cfg.data, budget.image_size, budget.max_train, budget.n_test, 0)
    classes = list(data.train[0].class_map.names)
    reg = get_registry("condition_builders")
    arms = {}
    for name in ("crop", "embedding"):
        parts = [ComponentSpec.parse(b, name).create(reg, {"classes": classes, "seed": 0,
                 "bank": str(run / "data" / "crop-bank.safetensors")})
                 for b in ARMS[name]["builders"]]  # fmt: skip
        builder = parts[0] + parts[1]
        backbone = create("backbones", "controlnet_ldm", preset="small", image_size=64,
                          autoencoder=str(run / "autoencoder"), device="cpu")  # fmt: skip
        arms[name] = (backbone, builder)
    common = {"progress": False, "tensorboard": False, "batch_size": 16, "seed": 0}
    for r in range(args.rounds):
        row = {"round": r + 1}
        for name, (backbone, builder) in arms.items():
            summary = backbone.fit(data.train, builder, steps=args.steps, **common)
            row[f"{name} s/step"] = round(1 / summary["steps_per_second"], 3)
        row["ratio"] = round(row["embedding s/step"] / row["crop s/step"], 2)
        row["load"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
