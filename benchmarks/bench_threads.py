"""The default CPU thread count of htd's heavy commands against the best of {1, all cores}.

For three workloads, the throughput with the default policy (:mod:`htd_core.threads`: what
``htd train`` / ``htd generate`` / ``htd discover embed`` set when no ``--threads`` is given,
measured afresh each round as the commands do) is compared with 1 thread and with all cores:

- training ``small`` (``controlnet_ldm``, semantic map + crop, batch 16, 64 px): steps/s;
- generation with ``small`` (8 layouts, 10 DDIM steps): images/s;
- discovery embedding (FID Inception, the default encoder of ``htd discover embed``,
  224 px patches): patches/s.

Rounds alternate the three settings; each prints its median. The target is
``default / best of {1, all} >= 0.9`` for each workload. The policy's own measurement
(about 0.1-1 s once per command) is printed apart, not counted in the throughput.

    python benchmarks/bench_threads.py [--rounds 3] [--steps 8] [--images 8] [--patches 8]

**Changing load** (``--scenario start`` or ``stop``): each run lasts two phases of ``--phase``
seconds; a competing CPU-bound process (one busy Python loop) starts at the phase boundary
(``start``) or runs during the first phase and stops there (``stop``). Each workload runs
continuously (training steps, denoising steps of batches of ``--images`` layouts, batches of
``--patches`` patches) under three settings, alternated over rounds: 1 thread, all cores, and the
default (:func:`~htd_core.threads.configure_threads` at the run's start, then
:mod:`htd_core.thread_governor`, as a command does; its measurements count in its time). The
work done in each phase (training steps, image-steps, patches; per unit, from the loops' own
progress ticks) gives a throughput per phase and setting; the printed ratio is default / the
better fixed setting of that phase, median over rounds. Target: >= 0.8 in every phase.

    python benchmarks/bench_threads.py --scenario start [--phase 25] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    parser.add_argument("--images", type=int, default=8, help="generated images per measurement")
    parser.add_argument("--patches", type=int, default=8, help="embedded patches per measurement")
    parser.add_argument("--only", choices=("train", "generate", "embed"), help="one workload")
    parser.add_argument("--scenario", choices=("steady", "start", "stop"), default="steady",
                        help="steady: no competitor; start / stop: a busy process starts / stops "
                        "between the two phases")  # fmt: skip
    parser.add_argument("--phase", type=float, default=25.0, help="seconds per phase (start/stop)")
    args = parser.parse_args()
    if args.scenario != "steady":
        from bench_threads_load import changing_load  # noqa: PLC0415 - this folder's sibling

        changing_load(args, ("train", "generate", "embed"))
        return
    for var in ("HTD_THREADS", "OMP_NUM_THREADS"):  # measure the policy itself
        os.environ.pop(var, None)

    import torch

    from htd_core.threads import all_cores, configure_threads

    print(f"cores: {all_cores()}, load average (1/5/15 min): {os.getloadavg()}")
    workloads = {"train": train_workload, "generate": generate_workload, "embed": embed_workload}
    rows = []
    for name, make in workloads.items():
        if args.only and name != args.only:
            continue
        run, unit, kind = make(args)
        rates: dict[str, list[float]] = {"1": [], "all": [], "default": []}
        chosen, probe = [], []
        for r in range(args.rounds):
            order = ["1", "all", "default"]
            order = order[r % 3 :] + order[: r % 3]
            for mode in order:
                if mode == "default":
                    start = time.perf_counter()
                    choice = configure_threads(None, workload=kind, device="cpu")
                    probe.append(time.perf_counter() - start)
                    chosen.append(choice.threads)
                else:
                    torch.set_num_threads(1 if mode == "1" else all_cores())
                rates[mode].append(run())
        med = {k: statistics.median(v) for k, v in rates.items()}
        ratio = med["default"] / max(med["1"], med["all"])
        rows.append((name, unit, med, ratio, chosen, statistics.median(probe)))
        print(
            f"{name:9s} 1 thread {med['1']:7.2f}  all {med['all']:7.2f}  default {med['default']:7.2f}"
            f" {unit}  -> default / best = {ratio:.2f}  (default chose {chosen}; "
            f"its measurement took {statistics.median(probe):.2f} s)",
            flush=True,
        )
    print(f"load average after (1/5/15 min): {os.getloadavg()}")
    worst = min(r[3] for r in rows)
    print(f"worst default / best ratio: {worst:.2f} (target >= 0.9)")


def _small_model():
    import htd_core
    from htd_core.testing import synthetic_sample

    samples = [synthetic_sample(64, seed=s) for s in range(32)]
    builder = htd_core.create("condition_builders", "semantic_map") + htd_core.create(
        "condition_builders", "crop", fixed_size=20, min_size=4
    )
    backbone = htd_core.create("backbones", "controlnet_ldm", preset="small", device="cpu")
    common = {"progress": False, "tensorboard": False}
    backbone.fit(samples, builder, steps=1, vae_steps=1, **common)  # builds the parts
    return backbone, builder, samples, common


def train_workload(args):
    backbone, builder, samples, common = _small_model()

    def run() -> float:
        summary = backbone.fit(samples, builder, steps=args.steps, **common)
        return summary["steps_per_second"]

    return run, "steps/s", "small"


def generate_workload(args):
    import htd_core

    backbone, builder, samples, _ = _small_model()
    conditions = [builder.build(s, seed=i) for i, s in enumerate(samples[: args.images])]
    options = htd_core.GenerationOptions(seed=0, num_inference_steps=10, scheduler="ddim")

    def run() -> float:
        start = time.perf_counter()
        backbone.generate(conditions, options)
        return len(conditions) / (time.perf_counter() - start)

    return run, "images/s", "small"


def embed_workload(args):
    import numpy as np

    import htd_core

    encoder = htd_core.create("encoders", "inception_fid", device="cpu")
    tiles = np.random.default_rng(0).integers(0, 256, (args.patches, 224, 224, 3), np.uint8)
    encoder(tiles[:2])  # load and warm up

    def run() -> float:
        start = time.perf_counter()
        encoder(tiles)
        return len(tiles) / (time.perf_counter() - start)

    return run, "patches/s", "large"


if __name__ == "__main__":
    main()
