"""Does the ``deeplabv3plus`` evaluator learn real tissue? GlaS, official split, real only.

Trains the evaluator's DeepLabv3+ on GlaS training tiles (``train_*``, 85 source images) and
tests on the held-out ``testA_*`` / ``testB_*`` tiles (80 source images), with the ``small``
CPU budget unless told otherwise, and prints mean / per-class IoU against the chance
reference (pixels drawn from the training class frequencies), with the wall time.

    python benchmarks/deeplabv3plus_glas.py [--steps 300] [--input-size 128] [--train 340] [--test 320]
"""

from __future__ import annotations

import argparse
import json
import time

from htd_core.data import shared_data_dir
from htd_core.types import TissueSample
from htd_plugins.evaluation import open_set
from htd_plugins.evaluators.deeplabv3plus import DeepLabV3PlusEvaluator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train", type=int, default=340, help="training tiles (first N)")
    parser.add_argument("--test", type=int, default=320, help="test tiles (every k-th)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    glas = shared_data_dir(required=True) / "glas"
    train = open_set(glas, match="train_*", limit=args.train)
    test_all = open_set(glas, match="test*", split="test")
    step = max(1, len(test_all) // args.test)
    test = [test_all[i] for i in range(0, len(test_all), step)][: args.test]
    start = time.perf_counter()
    ev = DeepLabV3PlusEvaluator(
        budget="small",
        steps=args.steps,
        input_size=args.input_size,
        batch_size=args.batch_size,
        settings=["real"],
        seed=args.seed,
    )
    ev.update(real=[train[i] for i in range(len(train))])
    ev.update(real=[TissueSample(s.image, s.mask, s.class_map, s.meta) for s in test])
    metrics = ev.aggregate()
    took = time.perf_counter() - start
    real = metrics["settings"]["real"]
    print(json.dumps(metrics, indent=2))
    print(
        f"GlaS: trained on {real['n_train']} tiles, tested on {metrics['n_test']} tiles from "
        f"{metrics['n_test_sources']} held-out source images; {args.steps} steps, "
        f"{args.input_size} px, batch {args.batch_size}, {metrics['budget']['encoder']}"
    )
    print(
        f"mean IoU {real['mean_iou']:.3f} (per class "
        + ", ".join(f"{k} {v:.3f}" for k, v in real["iou"].items())
        + f"), mean Dice {real['mean_dice']:.3f}; chance mean IoU {metrics['chance_mean_iou']:.3f}; "
        f"{took:.0f} s"
    )


if __name__ == "__main__":
    main()
