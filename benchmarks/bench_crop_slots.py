"""The dual condition at K classes: one-hot (``semantic_map + crop``, 5K channels) against
``crop_slots`` (1 + 5S channels, a learned class embedding in the backbone).

Data: synthetic discovery-like patches. Each of the K phenotypes has its own colour and
oriented stripe texture; a patch holds 2-4 of them (drawn per patch) in a Voronoi layout, like
a window of a pseudo map. The same training and held-out patches for both encodings.

Per encoding and K: condition channels, parameters (all trained parts; the condition path:
ControlNet conditioning embedding + class embedding), the condition of a batch of 8 at 256 px
(float32, what the paper preset moves per step), condition build time per 256 px patch, peak
RSS and steps/s of a ``controlnet_ldm`` ``tiny`` fit (32 px, batch 8; one fresh process per
run), and the quality proxy: the **held-out denoising loss** (noise-prediction MSE on held-out
patches at 10 fixed timesteps and fixed noise) with the condition, and its gain over the
dropped (null) condition, which only the condition's information can produce. Seeds change the
initialisation and batch order; the interval is the 95 % t-interval over seeds of the paired
difference slots - one-hot (a difference whose interval holds 0 is a tie).

Run: ``HTD_THREADS=1 nice python benchmarks/bench_crop_slots.py [--steps 300] [--seeds 3]``
(33 minutes on 2 shared cores at `uptime` load 8-10).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CROP = {"fixed_size": 10, "min_size": 4, "placement": "elsewhere"}
T_95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}


def phenotype_samples(k: int, n: int, size: int, seed: int, palette_seed: int = 0):
    """``n`` patches of ``size`` px holding 2-4 of ``k`` phenotypes (own colour and texture)."""
    from htd_core.types import ClassMap, TissueSample

    pal = np.random.default_rng([palette_seed, k])
    colours = pal.uniform(40, 215, (k, 3))
    angles, freqs = pal.uniform(0, np.pi, k), pal.uniform(0.2, 0.9, k)
    rng = np.random.default_rng([seed, k, n])
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    names = ClassMap(tuple(f"phenotype_{i:03d}" for i in range(k)))
    out = []
    for i in range(n):
        classes = rng.choice(k, size=int(rng.integers(2, 5)), replace=False)
        sites = rng.uniform(0, size, (len(classes) * 2, 2))
        owner = np.tile(classes, 2)
        dist = (yy[..., None] - sites[:, 0]) ** 2 + (xx[..., None] - sites[:, 1]) ** 2
        mask = owner[dist.argmin(-1)].astype(np.uint8)
        phase = np.cos(angles[mask]) * xx + np.sin(angles[mask]) * yy
        texture = 30 * np.sin(freqs[mask] * phase)[..., None]
        image = colours[mask] + texture + rng.normal(0, 6, (size, size, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        out.append(TissueSample(image, mask, names, {"slide_id": f"synthetic-{seed}-{i}"}))
    return out


def make_builder(encoding: str, slots: int):
    import htd_core

    if encoding == "one-hot":
        return htd_core.create("condition_builders", "semantic_map") + htd_core.create(
            "condition_builders", "crop", **CROP
        )
    return htd_core.create("condition_builders", "crop_slots", slots=slots, crop_options=CROP)


def heldout_losses(backbone, builder, samples, seed: int = 1234) -> tuple[float, float]:
    """Noise-prediction MSE on ``samples`` (conditioned, null), fixed timesteps and noise."""
    import torch

    from htd_core.types import Condition
    from htd_plugins.backbones.ldm.sampling import training_scheduler

    sched = training_scheduler(1000, "scaled_linear", backbone.config.prediction_type)
    latents = backbone.encode(np.stack([s.image for s in samples])).cpu()
    conds = [builder.build(s, seed=0) for s in samples]
    nulls = [Condition(meta={"size": list(s.size)}) for s in samples]
    gen = torch.Generator().manual_seed(seed)
    losses = {"cond": [], "null": []}
    for t in np.linspace(50, 950, 10).astype(int):
        noise = torch.randn(latents.shape, generator=gen)
        ts = torch.full((len(samples),), int(t), dtype=torch.long)
        noisy = sched.add_noise(latents, noise, ts)
        for key, cs in (("cond", conds), ("null", nulls)):
            pred = backbone.predict_noise(noisy, ts, cs, guidance_scale=1.0).cpu()
            losses[key].append(float(((pred - noise) ** 2).mean()))
    return float(np.mean(losses["cond"])), float(np.mean(losses["null"]))


def one_run(args: dict) -> dict:
    """A fit in this (fresh) process: costs and held-out losses."""
    import torch

    torch.set_num_threads(1)
    import htd_core
    from htd_plugins.backbones.ldm.autoencoders import load_autoencoder

    k, enc = args["k"], args["encoding"]
    train = phenotype_samples(k, args["train"], 32, seed=0)
    heldout = phenotype_samples(k, args["heldout"], 32, seed=1)
    builder = make_builder(enc, args["slots"])
    backbone = htd_core.create("backbones", "controlnet_ldm", preset="tiny", image_size=32,
                               device="cpu", class_embedding_dim=args["embedding_dim"])  # fmt: skip
    backbone.autoencoder = load_autoencoder(args["autoencoder"]).frozen(torch.device("cpu"))
    summary = backbone.fit(train, builder, steps=args["steps"], batch_size=8, seed=args["seed"],
                           progress=False, tensorboard=False, cache_latents=True)  # fmt: skip
    parts = backbone.denoiser.parts
    path = parts["controlnet"].controlnet_cond_embedding
    cond_params = sum(p.numel() for p in path.parameters())
    if "class_embedding" in parts:
        cond_params += sum(p.numel() for p in parts["class_embedding"].parameters())
    out = {
        **{key: args[key] for key in ("k", "encoding", "seed")},
        "channels": len(builder.channels(train[0].class_map)),
        "controlnet_inputs": parts["controlnet"].config.conditioning_channels,
        "params": sum(p.numel() for p in backbone.denoiser.parameters()),
        "condition_path_params": cond_params,
        "steps_per_second": summary["steps_per_second"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args["quality"]:
        out["heldout_loss"], out["null_loss"] = heldout_losses(backbone, builder, heldout)
    return out


def build_ms(encoding: str, k: int, slots: int) -> tuple[float, int]:
    """Median build time of one 256 px condition (ms) and its channels."""
    builder = make_builder(encoding, slots)
    samples = phenotype_samples(k, 8, 256, seed=2)
    builder.build(samples[0], seed=0)
    times = []
    for i, s in enumerate(samples):
        t = time.perf_counter()
        cond = builder.build(s, seed=i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, cond.num_channels


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval (nan half-width for one value)."""
    if len(values) < 2:
        return float(np.mean(values)), float("nan")
    return float(np.mean(values)), T_95[len(values) - 1] * statistics.stdev(values) / len(
        values
    ) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--cost-k", type=int, nargs="+", default=[100], help="costs only")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--train", type=int, default=64)
    parser.add_argument("--heldout", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args()
    import os

    import torch

    import htd_core

    torch.set_num_threads(1)
    print(f"uptime load at start: {os.getloadavg()[0]:.2f} (2 shared cores)")
    for k in sorted({*args.ks, *args.cost_k}):
        for enc in ("one-hot", "slots"):
            ms, ch = build_ms(enc, k, args.slots)
            mib = 8 * ch * 256 * 256 * 4 / 2**20
            print(f"K={k:3d} {enc:7s}: {ch:3d} channels, build {ms:5.1f} ms / 256 px patch, "
                  f"condition of a batch of 8 at 256 px: {mib:6.0f} MiB")  # fmt: skip
    runs = []
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for k in sorted({*args.ks, *args.cost_k}):
            ae = Path(tmp) / f"ae{k}"  # one autoencoder per K, shared by every run
            base = htd_core.create("backbones", "controlnet_ldm", preset="tiny", image_size=32)
            images = np.stack([s.image for s in phenotype_samples(k, args.train, 32, seed=0)])
            base.train_autoencoder(images, steps=200, progress=False)
            base.autoencoder.save(ae)
            quality = k in args.ks
            for seed in range(args.seeds if quality else 1):
                for enc in ("one-hot", "slots"):
                    job = {"k": k, "encoding": enc, "seed": seed, "autoencoder": str(ae),
                           "steps": args.steps if quality else 20, "quality": quality,
                           "slots": args.slots, "embedding_dim": args.embedding_dim,
                           "train": args.train, "heldout": args.heldout}  # fmt: skip
                    with ctx.Pool(1) as pool:
                        r = pool.apply(one_run, (job,))
                    r["load"] = os.getloadavg()[0]
                    runs.append(r)
                    print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    report(runs, args.ks)


def report(runs: list[dict], ks: list[int]) -> None:
    print("\n| K | encoding | channels | ControlNet inputs | params | condition-path params "
          "| steps/s | peak RSS MiB | held-out loss | gain over null |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted({r["k"] for r in runs}):
        for enc in ("one-hot", "slots"):
            rs = [r for r in runs if r["k"] == k and r["encoding"] == enc]
            sps, rss = (
                interval([r["steps_per_second"] for r in rs]),
                max(r["peak_rss_mib"] for r in rs),
            )
            cells = [f"{sps[0]:.2f}", f"{rss:.0f}"]
            if "heldout_loss" in rs[0]:
                loss = interval([r["heldout_loss"] for r in rs])
                gain = interval([r["null_loss"] - r["heldout_loss"] for r in rs])
                cells += [f"{loss[0]:.4f} ± {loss[1]:.4f}", f"{gain[0]:.4f} ± {gain[1]:.4f}"]
            else:
                cells += ["-", "-"]
            print(f"| {k} | {enc} | {rs[0]['channels']} | {rs[0]['controlnet_inputs']} | "
                  f"{rs[0]['params']:,} | {rs[0]['condition_path_params']:,} | "
                  + " | ".join(cells) + " |")  # fmt: skip
    for k in ks:
        pairs = {}
        for r in runs:
            if r["k"] == k and "heldout_loss" in r:
                pairs.setdefault(r["seed"], {})[r["encoding"]] = r["heldout_loss"]
        diffs = [p["slots"] - p["one-hot"] for p in pairs.values() if len(p) == 2]
        if diffs:
            mean, half = interval(diffs)
            verdict = "tie" if not abs(mean) > half else ("slots better" if mean < 0 else
                                                           "one-hot better")  # fmt: skip
            print(
                f"K={k}: held-out loss slots - one-hot = {mean:+.4f} ± {half:.4f} "
                f"(95 % t-interval over {len(diffs)} seeds): {verdict}"
            )


if __name__ == "__main__":
    main()
