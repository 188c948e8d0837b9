"""The training-free ``collage`` arm: each class region of the layout filled with its crop's
texture, reproducible per seed, saved and loaded; it refuses conditions without crops."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.generation import GenerationOptions
from htd_core.plugins import create
from htd_core.testing import real_tiles
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

GEN = GenerationOptions()


def test_regions_take_their_crops_colours(shared_data, tmp_path):
    """On real GlaS tiles: every pixel deep inside a class region carries a colour of that
    class's crop (the tiled texture), images depend on the seed only, and the saved folder
    loads and generates the same."""
    tiles = real_tiles(shared_data, "glas", n=4, size=64)
    builder = SemanticMapBuilder() + CropBuilder(fixed_size=24, min_size=8, placement="same")
    backbone = create("backbones", "collage", blend=0)
    summary = backbone.fit(tiles, builder, steps=100, output_dir=str(tmp_path / "run"))
    assert summary["steps"] == 0 and summary["unused_options"] == ["steps"]
    conditions = [builder.build(t) for t in tiles]
    images = backbone.generate(conditions, GEN.replace(seed=3))
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    for cond, image in zip(conditions, images, strict=True):
        spatial = cond.spatial.numpy()
        idx = {n: i for i, n in enumerate(cond.channels)}
        for name in backbone.class_map.names:
            region = spatial[idx[f"map:{name}"]] > 0.5
            valid = spatial[idx[f"valid:{name}"]] > 0.5
            if not region.any() or not valid.any():
                continue
            crop = np.stack([spatial[idx[f"crop:{name}:{c}"]][valid] for c in "rgb"], -1)
            palette = {tuple(v) for v in np.round((crop + 1) * 127.5).astype(np.uint8)}
            got = {tuple(v) for v in image[region]}
            assert got <= palette, name  # hard edges (blend 0): only the crop's own colours
    np.testing.assert_array_equal(backbone.generate(conditions, GEN.replace(seed=3)), images)
    assert not np.array_equal(backbone.generate(conditions, GEN.replace(seed=4)), images)
    loaded = type(backbone).load(summary["model_dir"])
    assert loaded.class_map == backbone.class_map
    np.testing.assert_array_equal(loaded.generate(conditions, GEN.replace(seed=3)), images)


def test_it_needs_a_map_and_crops(shared_data):
    tiles = real_tiles(shared_data, "glas", n=2, size=32)
    with pytest.raises(InputError, match="semantic_map \\+ crop"):
        create("backbones", "collage").fit(tiles, SemanticMapBuilder())
    with pytest.raises(InputError, match="blend"):
        create("backbones", "collage", blend=-1)
