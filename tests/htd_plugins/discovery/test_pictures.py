"""Pictures a pathologist reads: the pseudo map over the slide thumbnail and example patches
per phenotype, per slide and k; and the local-only slide_ids.csv."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from htd_core.images import read_index_mask
from htd_core.types import IGNORE_INDEX
from htd_plugins.discovery.grid import PatchGrid, open_for_grid, read_patch
from htd_plugins.discovery.maps import level_class_map, maps_from_stores
from htd_plugins.discovery.pictures import (
    EXAMPLES,
    GALLERY,
    OVERLAY,
    example_cells,
    labels_on,
    thumbnail_mpp,
)
from htd_plugins.discovery.slide_ids import SLIDE_IDS, read_slide_ids, record_slide_ids


@pytest.fixture(scope="module")
def drawn(cmu_run, tmp_path_factory):
    """The CMU run's maps again, now given the slide file: maps, pictures and slide_ids.csv."""
    out = tmp_path_factory.mktemp("pictures") / "maps"
    sid, slide = cmu_run["slide_id"], cmu_run["slide"]
    maps = maps_from_stores([cmu_run["store"].root], cmu_run["phenotypes"], out,
                            slide_files={sid: slide}, progress=False)  # fmt: skip
    grid = PatchGrid.from_dict(cmu_run["store"].entry(sid).meta["grid"])
    return {"out": out, "maps": maps[sid], "grid": grid, "slide": slide, "sid": sid}


def rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_overlay_is_the_map_on_the_slide_thumbnail(drawn):
    grid = drawn["grid"]
    thumb = open_for_grid(drawn["slide"], grid).thumbnail(thumbnail_mpp(grid))
    th, tw = thumb.shape[:2]
    assert max(th, tw) <= 1024 and max(th, tw) > 500
    for k, png in drawn["maps"].items():
        overlay = rgb(png.with_name(png.stem + OVERLAY))
        assert overlay.shape[1] == 2 * tw + 24 and overlay.shape[0] > th + 23  # title, legend
        left, right = (
            overlay[23 : 23 + th, 8 : 8 + tw],
            overlay[23 : 23 + th, 16 + tw : 16 + 2 * tw],
        )
        assert np.array_equal(left, thumb)  # the slide as it is
        labels = labels_on(read_index_mask(png), grid, (th, tw))
        tissue = labels != IGNORE_INDEX
        assert 0.1 < tissue.mean() < 0.9  # CMU: tissue and glass
        assert np.array_equal(right[~tissue], thumb[~tissue])  # glass left as it is
        colours = level_class_map(k).colorize(labels).astype(float)
        expected = 0.55 * thumb.astype(float) + 0.45 * colours
        assert np.abs(right[tissue] - expected[tissue]).max() <= 1  # class colours blended in
        assert np.abs(right[tissue].astype(int) - thumb[tissue]).mean() > 10  # not blank


def test_gallery_shows_the_encoders_patches_per_phenotype(drawn):
    grid, sid = drawn["grid"], drawn["sid"]
    slide = open_for_grid(drawn["slide"], grid)
    side = 64  # 16 px patches are shown at 64 px (nearest neighbour: x4)
    for k, png in drawn["maps"].items():
        gallery = rgb(png.with_name(png.stem + GALLERY))
        labels = read_index_mask(png)
        present = [c for c in range(k) if (labels == c).any()]
        assert gallery.shape == (
            23 + len(present) * (side + 6) + 6,
            180 + EXAMPLES * (side + 6) + 6,
            3,
        )
        for row, cls in enumerate(present[:3]):
            cells = example_cells(labels, cls, EXAMPLES, [int(sid[:8], 16), k, cls])
            assert len(cells) == min(EXAMPLES, int((labels == cls).sum()))
            assert all(labels[r, c] == cls for r, c in cells)
            y, x = 23 + 6 + row * (side + 6), 180 + 6
            tile = gallery[y : y + side, x : x + side]
            patch = read_patch(slide, grid, *map(int, cells[0]))
            assert np.array_equal(tile, patch.repeat(4, 0).repeat(4, 1))


def test_example_cells_prefer_interior_and_are_seeded():
    labels = np.full((6, 6), IGNORE_INDEX, np.uint8)
    labels[1:5, 1:5] = 0  # a 4 x 4 block: its 2 x 2 centre is interior
    labels[1, 1] = 1
    cells = example_cells(labels, 0, 2, [1, 2, 3])
    assert len(cells) == 2 and all(2 <= r <= 3 and 2 <= c <= 3 for r, c in cells)
    assert np.array_equal(cells, example_cells(labels, 0, 2, [1, 2, 3]))
    assert len(example_cells(labels, 0, 20, [0])) == 15  # all cells, interior first
    assert len(example_cells(labels, 7, 3, [0])) == 0


def test_slide_ids_csv_is_local_and_merged(drawn, tmp_path):
    path = drawn["out"] / SLIDE_IDS
    assert read_slide_ids(drawn["out"]) == {drawn["sid"]: "CMU-1-Small-Region.svs"}
    assert path.stat().st_mode & 0o777 == 0o600  # owner only
    record_slide_ids(tmp_path, {"b" * 16: "/data/slides/TCGA-XX.svs"})
    record_slide_ids(tmp_path, {"a" * 16: "x.ndpi", "b" * 16: "TCGA-YY.svs"})
    assert (tmp_path / SLIDE_IDS).read_text() == (
        f"slide_id,file_name\n{'a' * 16},x.ndpi\n{'b' * 16},TCGA-YY.svs\n"
    )  # sorted by id, names only (never the folder), the later name wins
    assert record_slide_ids(tmp_path / "none", {}) is None
