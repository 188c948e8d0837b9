"""Patch grid geometry and tissue detection on slides opened by the slide layer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_plugins.discovery.grid import (
    make_grid,
    open_for_grid,
    read_patch,
    tissue_cells,
    tissue_fraction,
)
from htd_plugins.slides import Slide


def write_half_tissue(path, size=(400, 300)):
    """Left half: the real H&E image shipped with tiatoolbox; right half: glass (off-white)."""
    from htd_plugins.discovery import tiatoolbox_sample_image

    w, h = size
    tissue = np.asarray(Image.open(tiatoolbox_sample_image()).convert("RGB"))[:h, : w // 2]
    glass = np.full((h, w - w // 2, 3), 242, np.uint8)
    Image.fromarray(np.concatenate([tissue, glass], axis=1)).save(path)
    return path


def test_grid_covers_slide_and_centres_patches(tmp_path):
    path = write_half_tissue(tmp_path / "half.png")
    slide = Slide(path, default_mpp=0.5)
    grid = make_grid(slide, read_mpp=1.0, patch_size=32, stride=16)
    assert (grid.cols, grid.rows) == (13, 10)  # ceil(200 / 16), ceil(150 / 16)
    assert grid.cell_size_base == pytest.approx(32.0)
    x, y = grid.patch_location(0, 0)
    assert (x, y) == (-16, -16)  # centred on cell (0, 0): half a patch minus half a cell
    patch = read_patch(slide, grid, 0, 0)
    assert patch.shape == (32, 32, 3) and patch.dtype == np.uint8
    assert (patch[:4, :4] == 255).all()  # outside the slide reads as white glass
    assert "slide_path" not in grid.to_dict()  # a grid records geometry, never the file
    again = open_for_grid(path, grid)
    assert np.array_equal(read_patch(again, grid, 3, 2), read_patch(slide, grid, 3, 2))


def test_tissue_fraction_separates_tissue_from_glass(tmp_path):
    path = write_half_tissue(tmp_path / "half.png")
    slide = Slide(path, default_mpp=0.5)
    grid = make_grid(slide, read_mpp=1.0, patch_size=32, stride=20)
    frac = tissue_fraction(slide, grid)
    assert frac[:, :4].mean() > 0.7 and frac[:, 6:].max() == 0
    cells = tissue_cells(frac, 0.5)
    assert cells[:, 1].max() < 6


def test_blank_slide_has_no_tissue(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((236 + rng.integers(-6, 7, (200, 200, 3))).astype(np.uint8)).save(
        tmp_path / "blank.png"
    )
    slide = Slide(tmp_path / "blank.png", default_mpp=0.5)
    grid = make_grid(slide, 0.5, 32, 32)
    assert tissue_fraction(slide, grid).max() == 0  # Otsu alone would split the noise


def test_bad_inputs(tmp_path, shared_data):
    with pytest.raises(InputError, match="does not exist"):
        Slide(tmp_path / "missing.svs")
    (tmp_path / "junk.svs").write_bytes(b"not a slide")
    with pytest.raises(InputError, match="cannot open slide"):
        Slide(tmp_path / "junk.svs")
    tcga = shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
    with pytest.raises(InputError, match="--slide-mpp"):
        Slide(tcga)
    slide = Slide(tcga, default_mpp=2.0)
    with pytest.raises(InputError, match="finer than"):
        make_grid(slide, read_mpp=0.5, patch_size=64, stride=64)
    with pytest.raises(InputError, match="larger than"):
        make_grid(slide, read_mpp=64.0, patch_size=224, stride=224)
    with pytest.raises(InputError, match="stride"):
        make_grid(slide, read_mpp=2.0, patch_size=64, stride=65)
    grid = make_grid(slide, read_mpp=8.0, patch_size=64, stride=64)
    cmu = tmp_path / tcga.name  # another file under the same name
    cmu.write_bytes((shared_data / "slides" / "CMU-1-Small-Region.svs").read_bytes())
    with pytest.raises(InputError, match="another file under the same name"):
        open_for_grid(cmu, grid)
