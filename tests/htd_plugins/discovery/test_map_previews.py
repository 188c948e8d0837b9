"""Every pseudo map has a colour preview beside it, at a viewable size, in class colours."""

from __future__ import annotations

import numpy as np
from PIL import Image

from htd_core.images import read_index_mask
from htd_plugins.discovery.maps import PREVIEW, level_class_map


def test_each_map_has_a_colour_preview(cmu_run):
    for k, png in cmu_run["maps"][cmu_run["slide_id"]].items():
        preview = png.with_name(png.stem + PREVIEW)
        labels = read_index_mask(png)
        image = np.asarray(Image.open(preview).convert("RGB"))
        assert min(image.shape[:2]) >= 512 > max(labels.shape)  # the map itself is tiny
        scale = image.shape[1] // labels.shape[1]
        top_left = image[scale // 2 :: scale, scale // 2 :: scale][: labels.shape[0]]
        expected = level_class_map(k).colorize(labels)
        assert np.array_equal(
            top_left[:, : labels.shape[1]], expected
        )  # class colours, cell by cell
