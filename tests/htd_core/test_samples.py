"""Test samples: real tiles read by the ``tiles`` sampler, with opaque ids."""

from __future__ import annotations

import numpy as np

from htd_core.images import opaque_id
from htd_core.splits import sources_of
from htd_core.testing import real_tiles


def test_real_tiles_have_opaque_ids_and_keep_sources(shared_data, htd_manager):
    # htd_manager: an isolated, empty plugin manager is installed; the tiles are still read
    tiles = real_tiles(shared_data, "glas", n=8)
    names = sorted(p.name for p in (shared_data / "glas" / "images").iterdir())[:8]
    assert [t.meta["slide_id"] for t in tiles] == [opaque_id(n) for n in names]
    assert sources_of(tiles) == [opaque_id(n.rsplit("_r", 1)[0]) for n in names]
    assert len(set(sources_of(tiles))) == 2  # four tiles per GlaS source image
    assert tiles[0].class_map.names == ("non_gland", "gland")


def test_real_tiles_threshold_and_crop(shared_data):
    tiles = real_tiles(shared_data, "camelyon_mini", n=2, size=256)
    assert [t.image.shape for t in tiles] == [(256, 256, 3)] * 2
    assert all(set(np.unique(t.mask)) <= {0, 1} for t in tiles)  # lossy grey JPEG, thresholded
    assert real_tiles(shared_data, "glas", n=2, size=512) == []  # 224 px tiles: none that large
