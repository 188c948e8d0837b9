"""Speed of the dual condition (semantic map + crops) on real 256 x 256 tiles with K = 4.

Side by side in one process:
  - htd ``crop`` (integral images: every candidate square scored at once, binary-search shrink);
  - a straightforward peer: rejection sampling of crop positions (numpy mean of each drawn
    window, up to 200 draws per size, halving the side when none fits), the usual way crop
    positions are picked in research code;
and the dual condition's share of one training step of the ``controlnet_ldm`` backbone
(``small`` preset, 64 px, batch 16) when that plugin is importable.

Run: ``python benchmarks/bench_conditioning.py`` (one to two minutes on 2 CPU cores).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from htd_core.data import shared_data_dir
from htd_core.testing import real_tiles, synthetic_sample
from htd_core.types import TissueSample
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder


def median_ms(fn, repeats: int = 30) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def peer_crops(sample: TissueSample, sides: np.ndarray, floor: int, rng) -> int:
    """Rejection-sampling crop placement into a dense 4K x H x W array; returns crops placed."""
    k, (h, w) = len(sample.class_map), sample.size
    out = np.zeros((4 * k, h, w), np.float32)
    placed = 0
    for i in range(k):
        if not (sample.mask == i).any():
            continue
        d = int(sides[i])
        while d >= floor:
            for _ in range(200):
                y, x = rng.integers(0, h - d + 1), rng.integers(0, w - d + 1)
                if (sample.mask[y : y + d, x : x + d] == i).mean() >= 0.9:
                    crop = sample.image[y : y + d, x : x + d].transpose(2, 0, 1)
                    out[3 * i : 3 * i + 3, y : y + d, x : x + d] = crop / 127.5 - 1
                    out[3 * k + i, y : y + d, x : x + d] = 1
                    placed += 1
                    break
            else:
                d //= 2
                continue
            break
    return placed


def load_samples() -> list[TissueSample]:
    root = shared_data_dir()
    if root is None:
        print("NOTE: ../shared/data absent; synthetic samples (timings only)")
        classes = ("tumor", "stroma", "normal", "background")
        return [synthetic_sample(256, classes, seed=s) for s in range(4)]
    return real_tiles(root, "wsss4luad_val", n=31, size=256)[:8]


def bench_builders(samples: list[TissueSample]) -> float:
    crop, semantic = CropBuilder(), SemanticMapBuilder()
    dual = semantic + crop
    rows = []
    for label, fn in [
        ("semantic_map", lambda s, i: semantic.build(s, seed=i)),
        ("crop (htd, vectorised)", lambda s, i: crop.build(s, seed=i)),
        ("semantic_map + crop (htd)", lambda s, i: dual.build(s, seed=i)),
        (
            "crop (peer, rejection sampling)",
            lambda s, i: peer_crops(s, crop.sizes(s), 16, np.random.default_rng(i)),
        ),
    ]:
        per_sample = [median_ms(lambda s=s, f=fn: f(s, 0)) for s in samples]
        rows.append((label, statistics.mean(per_sample)))
    print(f"\n{len(samples)} real 256x256 tiles, K={len(samples[0].class_map)} (WSSS4LUAD)")
    for label, ms in rows:
        print(f"  {label:34s} {ms:8.2f} ms/sample")
    htd, peer = rows[1][1], rows[3][1]
    print(f"  peer / htd crop time: {peer / htd:.1f}x")
    got_htd = sum(1 for s in samples for p in crop.build(s, seed=0).meta["crop_provenance"].values() if p and "x" in p)  # fmt: skip
    got_peer = sum(peer_crops(s, crop.sizes(s), 16, np.random.default_rng(0)) for s in samples)
    present = sum(int(np.any(s.mask == i)) for s in samples for i in range(len(s.class_map)))
    print(f"  classes given a crop: htd {got_htd}/{present}, peer {got_peer}/{present}")
    return rows[2][1]


def bench_training_share(samples: list[TissueSample]) -> None:
    try:
        import torch

        from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
        from htd_plugins.backbones.ldm.kl import KLAutoencoder
        from htd_plugins.backbones.ldm.sampling import training_scheduler
        from htd_plugins.backbones.ldm.training import diffusion_loss
    except ImportError as exc:
        print(f"\ncontrolnet_ldm not importable ({exc}): training-step share not measured")
        return
    backbone = ControlNetLDM(preset="small", device="cpu")
    size, batch = backbone.image_size, int(backbone.preset.train.batch_size)
    # the preset's (untrained) autoencoder, as fit gives the backbone one before its
    # denoiser: its factor and channels shape the latents
    backbone.autoencoder = KLAutoencoder.build(backbone.preset.vae, size).frozen("cpu")
    latent_channels, h, w = backbone.latent_shape(size, size)
    dual = SemanticMapBuilder() + CropBuilder()
    small = [
        TissueSample(
            s.image[y : y + size, x : x + size],
            s.mask[y : y + size, x : x + size],
            s.class_map,
            s.meta,
        )  # fmt: skip
        for s in samples
        for y, x in [(0, 0), (96, 96), (192, 192)]
    ]
    conds = [dual.build(s, seed=0) for s in small[:batch]]
    spatial = torch.stack([c.spatial for c in conds] * (batch // len(conds) + 1))[:batch]
    torch.manual_seed(0)
    denoiser = backbone.make_denoiser(backbone.build_parts(spatial.shape[1], 0, latent_channels))
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=1e-4)
    noise = training_scheduler(1000, "scaled_linear", "epsilon")
    latents = torch.randn(batch, latent_channels, h, w)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = diffusion_loss(denoiser, noise, latents, spatial, None, gen, 0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_ms = median_ms(step, repeats=5)
    build_ms = statistics.mean(median_ms(lambda s=s: dual.build(s, seed=1)) for s in small)
    share = batch * build_ms / (batch * build_ms + step_ms)
    print(
        f"\ncontrolnet_ldm 'small' preset ({size} px, batch {batch}, {spatial.shape[1]} condition channels), CPU:"
    )
    print(f"  one training step (forward + backward + AdamW): {step_ms:8.1f} ms")
    print(
        f"  building the batch's dual conditions:           {batch * build_ms:8.1f} ms ({build_ms:.2f} ms/sample)"
    )
    print(f"  share of the step spent on conditions: {100 * share:.1f}% (target <= 5%)")


def main() -> int:
    import torch

    samples = load_samples()
    threads = torch.get_num_threads()
    for n in (threads, 1):  # torch ops of semantic_map / composition thrash on busy cores
        torch.set_num_threads(n)
        print(f"\n== torch threads: {n}{' (default)' if n == threads else ' (as a loader worker)'}")
        bench_builders(samples)
    torch.set_num_threads(threads)
    bench_training_share(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
