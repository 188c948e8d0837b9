"""Does guidance help? FD of one arm of a finished ``htd experiment`` run, regenerated from the
same training layouts and seeds at several classifier-free guidance scales.

    python benchmarks/experiment_guidance.py examples/experiments/glas.yaml \
        --output-dir htd-output/experiments/glas-cpu-quick --budget cpu-quick --scales 1,2,4

Reads the run's data, model and feature cache (nothing in the run is changed; the images go
to a temporary folder) and prints one JSON line per scale: FD and KID per encoder against the
held-out patches, with the wall time and the load average. ``--max-layouts N`` takes the first
N training layouts (a cheaper sweep; its FD is comparable across its scales only).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--output-dir", required=True, help="the finished run's folder")
    parser.add_argument("--budget", required=True)
    parser.add_argument("--arm", default="crop")
    parser.add_argument("--scales", default="1,2,4")
    parser.add_argument(
        "--max-layouts", type=int, default=None,
        help="the first N training layouts only (FD depends on N: compare scales at one N, "
        "not with the run's own table)",
    )  # fmt: skip
    args = parser.parse_args()

    from htd_core.evaluation import EvaluationDriver, EvaluatorRun
    from htd_core.pipeline import Pipeline
    from htd_plugins.experiment import Experiment
    from htd_plugins.experiment.config import EVALUATOR_DEFAULTS
    from htd_plugins.experiment.measure import evaluation_driver

    exp = Experiment(
        args.config, budget=args.budget, output_dir=args.output_dir, log=lambda t: None
    )
    exp.load_data()
    trained = json.loads((exp.out / "stages" / f"train--{args.arm}.json").read_text())["result"]
    pipe = Pipeline.from_pretrained(trained["model_dir"])
    layouts = exp.layouts()[: args.max_layouts]
    # the run's frechet evaluator (its options and run-wide settings: device, encoders, the
    # feature cache in OUT/cache, the shared autoencoder through the arm's model), alone and
    # without the run's result store, so nothing the run reports is replaced
    run_driver = evaluation_driver(exp, trained["model_dir"], log=lambda t: None)
    frechet = [r for r in run_driver.runs if r.name == "frechet"]
    frechet = frechet or [EvaluatorRun("frechet", {**EVALUATOR_DEFAULTS["frechet"],
                                                   **exp.budget.evaluators.get("frechet", {})})]  # fmt: skip
    driver = EvaluationDriver(frechet, settings=run_driver.settings, progress=False)
    real = list(exp.data.test) + list(exp.data.train)  # held-out first, marked split=test
    for scale in (float(s) for s in args.scales.split(",")):
        start = time.perf_counter()
        # the run's generation options (sampler, steps, seed) at this guidance
        options = {**exp.budget.generation(exp.config.seed), "guidance_scale": scale}
        samples = pipe.generate(layouts, options)
        seconds = time.perf_counter() - start
        scores = driver.run(real, {"synthetic": samples})["frechet"]["synthetic"]["encoders"]
        print(json.dumps({"arm": args.arm, "guidance_scale": scale, "n": len(samples),
                          "options": {k: v for k, v in options.items() if k != "guidance_scale"},
                          "fd": {k: round(v["fd"], 2) for k, v in scores.items()},
                          "kid": {k: round(v["kid"], 5) if "kid" in v else None
                                  for k, v in scores.items()},
                          "generate_seconds": round(seconds, 1),
                          "load": [round(x, 2) for x in os.getloadavg()]}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
