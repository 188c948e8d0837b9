"""Held-out mIoU of the downstream DeepLabv3+ against training steps, on the experiment's data.

Builds the training / held-out splits ``htd experiment`` builds (the data sections of
``examples/experiments/glas.yaml`` and ``wsss4luad.yaml``, :func:`sample_splits` at the
budget's patch side and counts, as the runner's ``load_data``), trains the ``deeplabv3plus``
evaluator's network on the training patches (the ``real`` row) for each step count, and prints
held-out mean IoU (one confusion matrix over all held-out pixels) with its 95 % bootstrap
interval over held-out patches, for two configurations:

- ``old``: the network before (``tu-resnet18``, random init, output stride 16, ASPP rates
  12/24/36, ImageNet normalisation);
- ``new``: the ``small`` budget's (EfficientNet-Lite0 with its ImageNet weights, output
  stride 8, rates scaled to the 8 x 8 grid).

Same batch (8), lr (1e-3, one-cycle), augmentation and seed for both. Each (dataset, config,
steps) is its own run (the one-cycle schedule depends on the step count); every finished row
is appended to ``--out`` (JSON lines) and skipped when the script is run again.

    python benchmarks/segmentation_curve.py --threads 1 [--datasets glas wsss4luad]
        [--configs old new] [--steps 150 300 600 1200 2400] [--budget cpu] [--out curve.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "old": {"encoder": "tu-resnet18", "pretrained": False, "output_stride": 16,
            "atrous_rates": (12, 24, 36)},
    "new": {},
}  # fmt: skip


def load(dataset: str, budget: str, seed: int):
    """The experiment's splits of ``dataset`` at ``budget``'s patch side and counts (the file's
    ``data`` section only, read as ``htd experiment`` reads it)."""
    from htd_core.config import read_yaml_mapping, resolve_paths
    from htd_plugins.experiment.budgets import get_budget
    from htd_plugins.experiment.data import sample_splits

    path = ROOT / "examples" / "experiments" / f"{dataset}.yaml"
    raw = read_yaml_mapping(path, "experiment file", "an experiment")
    data = resolve_paths(raw["data"], path.parent, f"{path}: data")
    b = get_budget(budget)
    return sample_splits(data, b.image_size, b.max_train, b.n_test, seed, f"{path}: data")


def run(data, config: str, steps: int, seed: int, bootstrap: int) -> dict:
    """Train on the training patches, score the held-out ones."""
    from htd_plugins.evaluators.segmentation.bootstrap import image_confusions, with_interval
    from htd_plugins.evaluators.segmentation.metrics import score_predictions, summarise
    from htd_plugins.evaluators.segmentation.training import BUDGETS, predict, train_model

    cm = data.train[0].class_map
    budget = replace(BUDGETS["small"], steps=steps, input_size=64, **CONFIGS[config])
    train = (np.stack([s.image for s in data.train]), np.stack([s.mask for s in data.train]))
    test_images = np.stack([s.image for s in data.test])
    labels = torch.from_numpy(np.stack([s.mask for s in data.test]).astype(np.int64))
    start = time.perf_counter()
    model, loss = train_model([train], num_classes=len(cm), ignore_index=cm.ignore_index,
                              budget=budget, seed=seed)  # fmt: skip
    preds = predict(model, test_images)
    seconds = time.perf_counter() - start
    scores = summarise(score_predictions(preds, labels, num_classes=len(cm),
                                         ignore_index=cm.ignore_index), cm.names)  # fmt: skip
    confusions = image_confusions(preds, labels, len(cm), cm.ignore_index)
    scores = with_interval(scores, confusions, seed, bootstrap)
    return {"steps": steps, "mean_iou": scores["mean_iou"], "mean_iou_ci": scores.get("mean_iou_ci"),
            "iou": scores["iou"], "final_loss": loss, "seconds": round(seconds, 1),
            "load": [round(v, 2) for v in os.getloadavg()], "threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    from htd_core.threads import add_threads_argument, configure_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["glas", "wsss4luad"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", nargs="+", type=int, default=[150, 300, 600, 1200, 2400])
    parser.add_argument("--budget", default="cpu", help="experiment budget: patch counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("segmentation_curve.jsonl"))
    add_threads_argument(parser)
    args = parser.parse_args()
    configure_threads(args.threads)
    done = set()
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["dataset"], row["config"], row["steps"], row["budget"], row["seed"]))
    for dataset in args.datasets:
        data = load(dataset, args.budget, args.seed)
        print(f"{dataset}: {data.description}", flush=True)
        for config in args.configs:
            for steps in args.steps:
                if (dataset, config, steps, args.budget, args.seed) in done:
                    continue
                row = {"dataset": dataset, "config": config, "budget": args.budget,
                       "seed": args.seed, "n_train": len(data.train), "n_test": len(data.test),
                       **run(data, config, steps, args.seed, args.bootstrap)}  # fmt: skip
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                ci = row["mean_iou_ci"] or [float("nan")] * 2
                print(f"{dataset} {config:>3} {steps:>5} steps: mIoU {row['mean_iou']:.3f} "
                      f"[{ci[0]:.3f}, {ci[1]:.3f}]  {row['seconds']:.0f} s  load {row['load']}",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
