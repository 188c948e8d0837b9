"""The demo's data seam: real patches with maps, split by source; the crop view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from htd_core.images import opaque_id
from htd_core.types import Condition
from htd_plugins.condition_builders import crop_view
from htd_plugins.demo.sources import (
    from_discovery,
    from_image,
    load_demo_data,
    stain_map,
    upsample_grid,
)


def test_glas_patches_are_heterogeneous_and_split_by_source(shared_data):
    data = load_demo_data(64, data_dir=shared_data, max_train=40, max_test=8)
    assert len(data.train) == 40 and len(data.test) == 8
    for s in data.train + data.test:
        assert s.image.shape == (64, 64, 3) and s.meta["mpp"] > 0.9
        frac = np.bincount(s.mask.ravel(), minlength=2)[:2] / s.mask.size
        assert ((frac >= 0.15) & (frac <= 0.85)).sum() == 2  # rule applied before downscaling
    assert not {s.meta["slide_id"] for s in data.train} & {s.meta["slide_id"] for s in data.test}
    # GlaS's official split: the model never trains on a test image
    names = sorted(p.name for p in (Path(shared_data) / "glas" / "images").iterdir())
    train_ids = {opaque_id(n.rsplit("_r", 1)[0]) for n in names if n.startswith("train_")}
    assert {s.meta["slide_id"] for s in data.train} <= train_ids
    assert not {s.meta["slide_id"] for s in data.test} & train_ids


def test_unannotated_image_gets_stain_maps():
    import tiatoolbox

    target = Path(tiatoolbox.__file__).parent / "data" / "target_image.png"
    data = from_image(target, 64, 50, 8, 0, slide_mpp=0.25)
    assert data.train and data.test
    assert {s.meta["slide_id"] for s in data.train + data.test} == {opaque_id(target)}
    assert "target_image" not in data.source  # the description goes into results.json
    assert max(s.meta["x"] for s in data.train) + 64 <= min(s.meta["x"] for s in data.test) + 64
    mask = stain_map(np.asarray(data.train[0].image))
    assert set(np.unique(mask)) <= {0, 1, 2}


def test_crop_view_shows_only_valid_pixels():
    spatial = torch.zeros(8, 4, 4)  # crop:a:rgb, crop:b:rgb, valid:a, valid:b
    spatial[0:3, :2, :2] = 1.0
    spatial[6, :2, :2] = 1.0
    names = [f"crop:{c}:{x}" for c in "ab" for x in "rgb"] + ["valid:a", "valid:b"]
    view = crop_view(Condition(spatial=spatial, channels=names), 2, empty=40)
    assert (view[:2, :2] == 255).all() and (view[2:, 2:] == 40).all()


def test_upsample_grid_maps_pixels_to_cells():
    grid = np.array([[0, 1], [2, 255]], np.uint8)
    # image pixels of 2 base px each, cells of 4 base px: 2 image px per cell
    up = upsample_grid(grid, (5, 4), image_downsample=2.0, cell_downsample=4.0)
    assert up.tolist() == [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 255, 255],
        [2, 2, 255, 255],
        [2, 2, 255, 255],
    ]


def test_no_data_fallback_uses_discovery_pseudo_maps(tmp_path):
    from htd_plugins.discovery.quick import tiatoolbox_sample_image

    data = from_discovery(tiatoolbox_sample_image(), 64, 40, 8, 0, tmp_path / "discovery")
    assert data.train and data.test and "discovery pseudo maps" in data.source
    names = data.train[0].class_map.names
    assert all(n.startswith("phenotype_") for n in names) and 2 <= len(names) <= 5
    for s in data.train:
        labelled = s.mask[s.mask != 255]
        frac = np.bincount(labelled, minlength=len(names)) / labelled.size
        assert ((frac >= 0.2) & (frac <= 0.8)).sum() >= 2
