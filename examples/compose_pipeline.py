"""Compose sampler, condition builders, backbone and evaluator by registered name from a YAML file,
train, generate for held-out layouts and score them.

    python examples/compose_pipeline.py examples/pipeline.yaml --minutes 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from htd_core import Pipeline
from htd_core.splits import partition, sources_of, split_by_source
from htd_core.threads import configure_threads, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(Path(__file__).with_name("pipeline.yaml")))
    parser.add_argument(
        "--minutes", type=float, help="override fit.max_minutes (the whole fit's wall time)"
    )
    parser.add_argument(
        "--vae-minutes", type=float, help="override fit.vae_max_minutes (its autoencoder share)"
    )
    parser.add_argument(
        "--eval", type=int, default=32, help="held-out layouts to generate and score"
    )
    args = parser.parse_args()
    print(report("compose", configure_threads()))  # 1 thread or all cores: the faster here

    pipe = Pipeline.from_config(args.config)
    samples = list(pipe.samples())
    train_idx, test_idx = split_by_source(sources_of(samples), test_fraction=0.2, seed=0)
    train, test = partition(samples, train_idx), partition(samples, test_idx)[: args.eval]
    fit = {
        k: v for k, v in (("max_minutes", args.minutes), ("vae_max_minutes", args.vae_minutes)) if v
    }
    summary = pipe.fit(train, **fit)  # the training split only
    print(f"trained {summary['steps']} steps; model in {summary.get('model_dir')}")
    synthetic = pipe.generate(test, seed=0)  # real masks + crops cut from the real held-out images
    print(json.dumps(pipe.evaluate(test, synthetic), indent=2))


if __name__ == "__main__":
    main()
