from __future__ import annotations

import shutil

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_plugins.slides import Slide

TCGA = "slides/TCGA-CR-7395-01A-01-TS1.svs"


def test_plain_image_as_virtual_slide(drawn_slide):
    slide = Slide(drawn_slide["slide"], slide_mpp=0.5)
    assert slide.dimensions == (1024, 768)
    assert slide.resolve_mpp() == 0.5
    assert slide.resolve_mpp(mpp=1.0) == 1.0
    assert slide.dimensions_at(1.0) == (512, 384)
    patch = slide.read(100, 100, 32, 1.0)  # resolution coordinates: (200, 200) at level 0
    assert patch.shape == (32, 32, 3) and patch.dtype == np.uint8
    assert patch.mean() < 220  # inside the pink block


def test_resolution_by_power_and_level(shared_data):
    slide = Slide(shared_data / TCGA, slide_mpp=2.0)
    assert slide.resolve_mpp(objective_power=2.5) == pytest.approx(4.0)
    assert slide.resolve_mpp(level=1) == pytest.approx(2.0 * 2.0005, rel=1e-4)
    assert slide.level_for(4.0) == 0 and slide.level_for(4.01) == 1
    with pytest.raises(InputError, match="levels 0..1"):
        slide.resolve_mpp(level=2)
    with pytest.raises(InputError, match="one of mpp, objective_power or level"):
        slide.resolve_mpp(mpp=2.0, level=1)


def test_mpp_finer_than_base_is_refused(shared_data):
    slide = Slide(shared_data / TCGA, slide_mpp=2.0)
    with pytest.raises(InputError, match=r"finer than slide .* base resolution 2 um/px"):
        slide.resolve_mpp(mpp=0.5)
    assert slide.resolve_mpp(mpp=1.97) == 1.97  # within calibration tolerance


def test_slide_without_mpp_asks_for_it(shared_data):
    with pytest.raises(InputError, match="no microns-per-pixel metadata: pass .*slide_mpp"):
        Slide(shared_data / TCGA)


def test_metadata_mpp_is_used(shared_data):
    slide = Slide(shared_data / "slides" / "CMU-1-Small-Region.svs")
    assert slide.base_mpp == pytest.approx(0.499)


def test_missing_slide(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Slide(tmp_path / "nope.svs", slide_mpp=0.5)


def test_corrupt_slide(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + bytes(range(256)) * 40)
    with pytest.raises(InputError, match="broken.svs"):
        Slide(bad, slide_mpp=0.5)


def test_truncated_slide(tmp_path, shared_data):
    cut = tmp_path / "cut.svs"
    with open(shared_data / TCGA, "rb") as src:
        cut.write_bytes(src.read(300_000))
    with pytest.raises(InputError, match="cut.svs"):
        Slide(cut, slide_mpp=2.0)


def test_annotation_file_is_not_a_slide(tmp_path):
    f = tmp_path / "a.geojson"
    f.write_text("{}")
    with pytest.raises(InputError, match="not an image"):
        Slide(f)


def test_slide_id_is_opaque(tmp_path, shared_data):
    copy = tmp_path / "renamed.svs"
    shutil.copy(shared_data / "slides" / "CMU-1-Small-Region.svs", copy)
    sid = opaque_id(copy)
    assert sid == Slide(copy).slide_id and "renamed" not in sid and len(sid) == 16
    assert sid == opaque_id("elsewhere/renamed.svs")  # the file name only, not its folder


def test_default_mpp_only_for_slides_without_metadata(shared_data):
    cmu = Slide(shared_data / "slides" / "CMU-1-Small-Region.svs", default_mpp=2.0)
    assert cmu.base_mpp == pytest.approx(0.499)  # its metadata wins
    tcga = Slide(shared_data / TCGA, default_mpp=2.0)
    assert tcga.base_mpp == 2.0 and tcga.dimensions_at(4.0) == Slide(
        shared_data / TCGA, slide_mpp=2.0
    ).dimensions_at(4.0)
    with pytest.raises(InputError, match="default_mpp=0"):
        Slide(shared_data / TCGA, default_mpp=0)


def test_read_level0_pads_outside_with_white(drawn_slide):
    slide = Slide(drawn_slide["slide"], slide_mpp=0.5)
    inside = slide.read_level0(200, 200, 32, 1.0)
    assert np.array_equal(inside, slide.read(100, 100, 32, 1.0))  # same pixels, other origin
    corner = slide.read_level0(-32, -32, 32, 1.0)  # half outside the slide at 1 um/px
    assert corner.shape == (32, 32, 3) and (corner[:14, :14] == 255).all()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_transparent_background_reads_as_white_glass(tmp_path, suffix):
    """An RGBA image whose background is transparent (RGB 0 where alpha 0): composited onto
    white, so the background is glass, not black tissue."""
    from PIL import Image

    from htd_plugins.slides.tissue import tissue_mask

    rgba = np.zeros((256, 256, 4), np.uint8)
    block = np.random.default_rng(0).normal((200, 110, 170), 12, (128, 128, 3))
    rgba[64:192, 64:192, :3] = np.clip(block, 0, 255).astype(np.uint8)
    rgba[64:192, 64:192, 3] = 255
    Image.fromarray(rgba).save(tmp_path / f"slide{suffix}")
    slide = Slide(tmp_path / f"slide{suffix}", slide_mpp=0.5)
    patch = slide.read(32, 32, 64, 0.5)  # a quarter tissue, the rest background
    assert (patch[:32, :32] == 255).all() and patch[40:, 40:].mean() < 200
    tissue = tissue_mask(slide.thumbnail(4.0), 4.0, "otsu")
    assert 0.2 < tissue.mean() < 0.3  # the block (a quarter of the slide); black bg: 0.71
