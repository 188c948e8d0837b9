"""Which autoencoder? Reconstruction Frechet distance and cost of each choice, beside real vs
real at the same N (issue "Synthetic tissue good enough to train on", item 1).

Every generated image is decoded by the backbone's autoencoder, so its round trip bounds what
any arm can reach. For each image size and autoencoder, on an experiment's splits (by source
image, as ``htd experiment`` samples them at that size):

- real vs real: N training patches (a seeded subset) vs the N_test held-out patches;
- reconstruction: the SAME N training patches through the autoencoder vs the held-out patches
  (unpaired: no held-out image is compared with its own reconstruction);

under the FID Inception and EfficientNet-Lite0, with 95 % bootstrap intervals (held-out
resamples stream 0, candidate stream 1, as :mod:`htd_core.bootstrap` defines), the paired
difference reconstruction - real (same resamples), KID, held-out mean L1 (0-255) and the
cost: seconds per image to encode + decode (1 thread, median of 3 batches of 16).

    python benchmarks/bench_autoencoders.py --experiment examples/experiments/glas.yaml \
        --sizes 64,128 --kl 64=/path/to/run/autoencoder [--taef2 ../shared/weights/taef2]

``--finetune STEPS`` adds TAEF2 with its decoder fine-tuned on the training patches
(``LatentBackbone.train_autoencoder`` with ``autoencoder=<TAEF2>``, whole patches, learning rate
``--finetune-lr``) once per ``--finetune-adversarial`` weight (PatchGAN term from step 0).
``--finetune-perceptual`` gives the perceptual term's weights to try (LPIPS-style on
EfficientNet-Lite0 features, :mod:`htd_plugins.backbones.ldm.perceptual`; each with every
adversarial weight). ``--train-kl STEPS`` trains KL autoencoders here from scratch, as the
experiment's autoencoder stage does (``small`` preset, whole patches, seed ``--seed``), once per
``--kl-perceptual`` weight: the same recipe with and without the perceptual term.
``--kl SIZE=FOLDER`` adds a trained KL autoencoder (``htd train-vae`` or an experiment's
``OUT/autoencoder``) at the size it was trained at; ``--extra NAME@SIZE=FOLDER`` any other
autoencoder folder (e.g. a fine-tuned TAEF2). One JSON line per row, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ("inception_fid", "efficientnet_lite0")


def seconds_per_image(ae, images: np.ndarray) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        ae.reconstruct(images[:16])
        times.append((time.perf_counter() - start) / min(16, len(images)))
    return statistics.median(times)


def train_here(taef2: Path | str | None, train: np.ndarray, size: int, steps: int, seed: int,
               **options) -> str:  # fmt: skip
    """An autoencoder trained on ``train`` through ``LatentBackbone.train_autoencoder``:
    TAEF2's decoder fine-tuned (``taef2`` given) or a KL one from scratch; returns the saved
    folder."""
    import tempfile

    from htd_core import create

    extra = {"autoencoder": str(taef2)} if taef2 else {}
    backbone = create("backbones", "controlnet_ldm", preset="small", image_size=size,
                      device="cpu", **extra)  # fmt: skip
    start = time.perf_counter()
    summary = backbone.train_autoencoder(
        train, steps=steps, seed=seed, progress=False, **options
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="autoencoder-")) / "ae"
    backbone.autoencoder.save(folder)
    print(json.dumps({"trained": str(folder), "size": size, "taef2": bool(taef2), **options,
                      "seconds": round(time.perf_counter() - start, 1),
                      "final_loss": summary["final_loss"]}), flush=True)  # fmt: skip
    return str(folder)


def score(features_test: np.ndarray, features: np.ndarray, seed: int, b: int) -> dict:
    from htd_core import bootstrap as boot
    from htd_plugins.evaluators.distance import fd_math
    from htd_plugins.evaluators.distance.aggregate import bootstrap_fd, bootstrap_kid
    from htd_plugins.evaluators.distance.estimators import kernel_inception_distance

    mu_t, sig_t = fd_math.statistics(features_test)
    mu, sig = fd_math.statistics(features)
    fd = fd_math.frechet_distance(mu_t, sig_t, mu, sig)
    fds = bootstrap_fd(features_test, features, seed, b)
    kids = bootstrap_kid(features_test, features, seed, b)
    return {"fd": fd, "fd_ci": boot.interval(fds, center=fd), "fd_boot": fds,
            "kid": kernel_inception_distance(features_test, features, seed=seed,
                                             subset_size=min(len(features), len(features_test)) // 2)["kid"],
            "kid_ci": boot.interval(kids)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(ROOT / "examples/experiments/glas.yaml"))
    parser.add_argument("--budget", default="cpu-quick")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--kl", action="append", default=[], help="SIZE=FOLDER")
    parser.add_argument("--extra", action="append", default=[], help="NAME@SIZE=FOLDER")
    parser.add_argument("--taef2", default=None, help="TAEF2 weights folder (default: shared)")
    parser.add_argument("--finetune", type=int, default=0, help="decoder steps (0: none)")
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--finetune-adversarial", default="0", help="weights, comma-separated")
    parser.add_argument("--finetune-perceptual", default="0", help="weights, comma-separated")
    parser.add_argument("--train-kl", type=int, default=0, help="KL steps here (0: none)")
    parser.add_argument("--kl-perceptual", default="0,1", help="weights, comma-separated")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from htd_core.bootstrap import paired_interval
    from htd_core.data import taef2_dir
    from htd_plugins.backbones.ldm.autoencoders import load_autoencoder
    from htd_plugins.evaluators.distance.encoding import build_encoder, embed_images
    from htd_plugins.experiment import get_budget, load_experiment
    from htd_plugins.experiment.data import sample_splits

    torch.set_num_threads(1)
    budget = get_budget(args.budget)
    cfg = load_experiment(args.experiment)
    taef2 = args.taef2 or taef2_dir()
    encoders = {name: build_encoder(name) for name in ENCODERS}
    rows, boots = [], {}
    for size in (int(s) for s in args.sizes.split(",")):
        data = sample_splits(cfg.data, size, budget.max_train, budget.n_test, args.seed)
        train = np.stack([s.image for s in data.train])
        test = np.stack([s.image for s in data.test])
        n = min(len(test), len(train))
        subset = np.sort(np.random.default_rng(args.seed).permutation(len(train))[:n])
        choices: dict[str, str] = {}
        if taef2:
            choices["taef2 (frozen)"] = str(taef2)
        for item in args.kl:
            at, folder = item.split("=", 1)
            if int(at) == size:
                choices["kl (trained here)"] = folder
        for item in args.extra:
            name, rest = item.split("@", 1)
            at, folder = rest.split("=", 1)
            if int(at) == size:
                choices[name] = folder
        for weight in (float(w) for w in args.finetune_adversarial.split(",")):
            for perceptual in (float(w) for w in args.finetune_perceptual.split(",")):
                if not (taef2 and args.finetune):
                    break
                name = f"taef2 decoder {args.finetune} steps, adv {weight:g}, perc {perceptual:g}"
                choices[name] = train_here(
                    taef2, train, size, args.finetune, args.seed, learning_rate=args.finetune_lr,
                    crop_size=None, adversarial_weight=weight, perceptual_weight=perceptual,
                )  # fmt: skip
        for perceptual in (float(w) for w in args.kl_perceptual.split(",")):
            if args.train_kl:
                name = f"kl {args.train_kl} steps here, perc {perceptual:g}"
                choices[name] = train_here(None, train, size, args.train_kl, args.seed,
                                           perceptual_weight=perceptual)  # fmt: skip
        feats_test = {k: embed_images(e, list(test)) for k, e in encoders.items()}
        real = {k: score(feats_test[k], embed_images(e, list(train[subset])), args.seed,
                         args.bootstrap) for k, e in encoders.items()}  # fmt: skip
        base = {"dataset": cfg.name, "size": size, "n": n, "n_test": len(test),
                "load": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
        rows.append(
            {**base, "autoencoder": "real vs real", **{k: _public(v) for k, v in real.items()}}
        )
        print(json.dumps(rows[-1]), flush=True)
        for name, folder in choices.items():
            ae = load_autoencoder(folder).frozen("cpu")
            recon = ae.reconstruct(train[subset])
            l1 = float(np.abs(ae.reconstruct(test).astype(np.float64) - test).mean())
            row = {**base, "autoencoder": name, "held_out_l1": round(l1, 2),
                   "s_per_image": round(seconds_per_image(ae, test), 4)}  # fmt: skip
            for k, e in encoders.items():
                res = score(feats_test[k], embed_images(e, list(recon)), args.seed, args.bootstrap)
                res["minus_real_ci"] = paired_interval(
                    res["fd_boot"], real[k]["fd_boot"], center=res["fd"] - real[k]["fd"]
                )
                row[k] = _public(res)
                boots[size, name, k] = (res["fd_boot"], res["fd"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| dataset | px | autoencoder | N | FD Inception [95 %] | FD EffNet [95 %] | "
        "recon - real (Inception) | KID Inception | held-out L1 | s / image |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        inc, eff = r["inception_fid"], r["efficientnet_lite0"]
        print(f"| {r['dataset']} | {r['size']} | {r['autoencoder']} | {r['n']} | {_ci(inc)} | "
              f"{_ci(eff)} | {_pair(inc)} | {inc['kid']:.4f} | {r.get('held_out_l1', '')} | "
              f"{r.get('s_per_image', '')} |")  # fmt: skip
    print("\nPaired differences, row - column (same resamples; 95 % interval):")
    for (size, a, k), (boot_a, fd_a) in boots.items():
        for (size_b, b, k_b), (boot_b, fd_b) in boots.items():
            if size_b == size and k_b == k and a < b:
                ci = paired_interval(boot_a, boot_b, center=fd_a - fd_b)
                print(
                    f"| {size} | {k} | {a} - {b} | {fd_a - fd_b:+.1f} [{ci[0]:+.1f}, {ci[1]:+.1f}] |"
                )


def _public(res: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()
            if k != "fd_boot"} | {"fd_ci": [round(x, 2) for x in res["fd_ci"]]}  # fmt: skip


def _ci(res: dict) -> str:
    lo, hi = res["fd_ci"]
    return f"{res['fd']:.1f} [{lo:.1f}, {hi:.1f}]"


def _pair(res: dict) -> str:
    ci = res.get("minus_real_ci")
    return "" if ci is None else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


if __name__ == "__main__":
    main()
