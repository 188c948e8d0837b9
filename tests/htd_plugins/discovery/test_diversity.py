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
