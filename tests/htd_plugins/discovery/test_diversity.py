"""Diversity-aware sampling covers rare tissue."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_plugins.discovery.diversity import k_center_greedy, random_projection, sample_slide, sketch


def coverage_radius(points: np.ndarray, chosen: np.ndarray) -> float:
    d = ((points[:, None] - points[chosen][None]) ** 2).sum(-1)
    return float(np.sqrt(d.min(1)).max())


def test_rare_cluster_is_sampled(make_blobs):
    x = make_blobs([980, 12, 8], dim=8, seed=1)
    rare = np.arange(980, 1000)
    chosen = k_center_greedy(x, 20, diversity=0.5, seed=0)
    uniform = k_center_greedy(x, 20, diversity=0.0, seed=0)
    assert len(chosen) == 20 and len(np.unique(chosen)) == 20
    assert np.isin(rare[:12], chosen).any() and np.isin(rare[12:], chosen).any()
    assert not np.isin(rare, uniform).any()  # a uniform draw of 20 misses both rare blobs
    assert coverage_radius(x, chosen) < 0.5 * coverage_radius(x, uniform)


def test_sample_slide_reads_memmaps_and_keeps_small_slides(tmp_path, make_blobs):
    x = make_blobs([300, 300], dim=256, seed=2).astype(np.float16)
    path = tmp_path / "emb.f16"
    x.tofile(path)
    mm = np.memmap(path, np.float16, "r", shape=x.shape)
    idx = sample_slide(mm, 50, sketch_dim=32, seed=0)
    assert len(idx) == 50 and np.all(np.diff(idx) > 0)
    assert np.array_equal(sample_slide(mm[:40], 50), np.arange(40))
    assert np.array_equal(idx, sample_slide(mm, 50, sketch_dim=32, seed=0))  # deterministic
    with pytest.raises(InputError):
        sample_slide(mm, 0)


def test_projection_keeps_distances(make_blobs):
    x = make_blobs([200], dim=1024, seed=3, spread=1.0)
    p = random_projection(1024, 256, seed=0)
    y = sketch(x, p)
    d_x = np.linalg.norm(x[:50, None] - x[None, 50:100], axis=-1)
    d_y = np.linalg.norm(y[:50, None] - y[None, 50:100], axis=-1)
    assert np.abs(d_y / d_x - 1).mean() < 0.1


def test_cluster_samples_slides_in_worker_processes_to_the_same_bytes(tmp_path, make_blobs):
    import json

    from htd_plugins.discovery.clustering import cluster_stores
    from htd_plugins.discovery.kmeans import KMeansOptions
    from htd_plugins.discovery.store import EmbeddingStore

    root = tmp_path / "store"
    EmbeddingStore(root, {"encoder": "tiny", "weights_id": "w", "embed_dim": 8,
                          "read_mpp": 4.0, "patch_size": 16})  # fmt: skip
    for i, n in enumerate([300, 0, 120, 250]):  # a slide without tissue among them
        folder = root / "slides" / f"{i:016x}"
        folder.mkdir(parents=True)
        emb = (
            make_blobs([n // 3, n // 3, n - 2 * (n // 3)], dim=8, seed=i) if n else np.zeros((0, 8))
        )
        emb.astype(np.float16).tofile(folder / "embeddings.f16")
        np.save(folder / "coords.npy", np.zeros((n, 2), np.int32))
        meta = {"slide_id": folder.name, "n_patches": n, "embed_dim": 8, "complete": True}
        (folder / "meta.json").write_text(json.dumps(meta))
    opts = KMeansOptions(n_phenotypes=4, coarse_k=2, min_cluster_size=2)
    outs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        cluster_stores([root], out, samples_per_slide=60, levels=(2, 4), options=opts,
                       progress=False, workers=workers)  # fmt: skip
        outs[workers] = out
    assert (outs[0] / "sample.f16").read_bytes() == (outs[2] / "sample.f16").read_bytes()
    assert (outs[0] / "sample.json").read_text() == (outs[2] / "sample.json").read_text()
    assert [s["sampled"] for s in json.loads((outs[2] / "sample.json").read_text())["slides"]] == [
        60, 0, 60, 60,
    ]  # fmt: skip
    np.testing.assert_array_equal(
        np.load(outs[0] / "centroids.npy"), np.load(outs[2] / "centroids.npy")
    )
