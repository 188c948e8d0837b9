"""The ``frechet`` evaluator's reference rows at the ``demo`` budget: embedding (and
reconstructing) only the training images they use against every one, as before.

The real-vs-real and reconstruction rows use a seeded subset of the training images, as many
as the synthetic set has (``htd_plugins.evaluators.distance.references.training_subset``).
The evaluator now holds the training images until ``aggregate`` knows that N and embeds and
reconstructs only those; past ``DEFER_BYTES`` it embeds every one as it comes, which is what
it did before for any size. Both are timed here on the same data in one process,
alternating: the ``demo`` budget's sizes (600 training patches, 64 held-out, 64 synthetic at
64 px; the synthetic set is 64 flipped training patches: a timing stand-in, not evidence),
both default encoders (FID Inception, EfficientNet-Lite0), a saved model's autoencoder for the
reconstruction row, no feature cache (a fresh run), ``--threads`` torch threads. Prints each
path's median seconds, the ratio, the load average, and whether the FD values agree (to
1e-6: an image embedded in another batch differs by float rounding).

    python benchmarks/bench_frechet_references.py --model runs/glas-cpu-quick/arms/crop/seed-0/train/model
        [--experiment examples/experiments/glas.yaml] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved pipeline (its autoencoder)")
    parser.add_argument("--experiment", default=str(ROOT / "examples/experiments/glas.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (make demo: all)")
    args = parser.parse_args()

    import torch

    from htd_core import TissueSample
    from htd_plugins.evaluators import frechet as fr
    from htd_plugins.experiment import get_budget, load_experiment
    from htd_plugins.experiment.data import sample_splits

    torch.set_num_threads(args.threads)
    budget = get_budget("demo")
    cfg = load_experiment(Path(args.experiment))
    data = sample_splits(cfg.data, budget.image_size, budget.max_train, budget.n_test, 0)
    test = [TissueSample(s.image, s.mask, s.class_map, {**s.meta, "split": "test"})
            for s in data.test]  # fmt: skip
    synthetic = [TissueSample(s.image[:, ::-1].copy(), s.mask[:, ::-1].copy(), s.class_map, {})
                 for s in data.train[: budget.n_synthetic]]  # fmt: skip
    real = test + list(data.train)

    def once(defer: int) -> tuple[float, dict]:
        fr.DEFER_BYTES = defer
        ev = fr.FrechetEvaluator(model=args.model, seed=0)
        start = time.perf_counter()
        out = ev.evaluate(real, synthetic)
        return time.perf_counter() - start, out["encoders"]

    default = fr.DEFER_BYTES
    print(f"load before {os.getloadavg()[0]:.2f}; {len(data.train)} training, {len(test)} "
          f"held-out, {len(synthetic)} synthetic patches at {budget.image_size} px")  # fmt: skip
    once(default)  # warm: the encoders' and the autoencoder's weights loaded
    times: dict[str, list[float]] = {"subset": [], "every one": []}
    results = {}
    for _ in range(args.repeats):
        for name, defer in (("subset", default), ("every one", 0)):
            seconds, results[name] = once(defer)
            times[name].append(seconds)
            print(f"  {name}: {seconds:.1f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    for enc, row in results["subset"].items():
        other = results["every one"][enc]
        same = all(abs(row[k] - other[k]) <= 1e-6 * abs(other[k])
                   for k in ("fd", "fd_real_train", "fd_reconstruction"))  # fmt: skip
        print(f"{enc}: FD {row['fd']:.2f}, real vs real {row['fd_real_train']:.2f}, "
              f"reconstruction {row['fd_reconstruction']:.2f} (N {row['n_real_train']}); "
              f"equal on both paths (to 1e-6, float rounding): {same}")  # fmt: skip
    print(f"median of {args.repeats}: subset {med['subset']:.1f} s, every one "
          f"{med['every one']:.1f} s, ratio {med['every one'] / med['subset']:.2f}x; "
          f"load after {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
