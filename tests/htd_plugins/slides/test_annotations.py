from __future__ import annotations

import json

import numpy as np
import pytest

from htd_core import ClassMap
from htd_core.errors import InputError
from htd_plugins.slides.annotation_files import label_of, open_store, store_labels
from htd_plugins.slides.annotations import LabelResolver, check_bounds, paint_store
from htd_plugins.slides.tissue import resize_nearest, tissue_mask

from .conftest import ANNOTATIONS

CM = ClassMap(("tumor", "stroma", "normal"))


def write_geojson(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def paint(
    path,
    shape=(40, 40),
    cell=8.0,
    label_map=None,
    unknown="error",
    precedence="area",
    unannotated=255,
):
    cells = np.full(shape, unannotated, np.uint8)
    resolver = LabelResolver(CM, label_map, unknown)
    with open_store(path) as store:
        resolver.check(store_labels(store), str(path))
        paint_store(store, cells, cell, resolver, np.ones(shape, bool), unannotated, precedence)
    return cells


def test_label_of_qupath_and_plain_properties():
    assert label_of({"classification": {"name": "Tumor", "color": [1, 2, 3]}}) == "Tumor"
    assert label_of({"classification": "Stroma"}) == "Stroma"
    assert label_of({"type": "nucleus"}) == "nucleus"
    assert label_of({"name": "Annotation 3"}) == "<unclassified>"


def test_cells_follow_polygon_edges(tmp_path, feature):
    path = write_geojson(tmp_path / "a.geojson", [feature("tumor", 80, 80, 160, 240)])
    cells = paint(path)
    rows, cols = np.nonzero(cells == 0)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (
        10,
        29,
        10,
        19,
    )  # cells whose centre is inside


def test_smaller_polygon_wins_by_area(tmp_path, feature):
    feats = [feature("tumor", 80, 80, 120, 120), feature("stroma", 0, 0, 320, 320)]
    cells = paint(write_geojson(tmp_path / "a.geojson", feats))
    assert np.all(cells[10:15, 10:15] == 0) and cells[5, 5] == 1


def test_precedence_by_class_list(tmp_path, feature):
    feats = [feature("tumor", 80, 80, 120, 120), feature("stroma", 0, 0, 320, 320)]
    cells = paint(write_geojson(tmp_path / "a.geojson", feats), precedence=["tumor", "stroma"])
    assert np.all(cells[:40, :40] == 1)  # stroma listed last: on top


def test_polygon_holes_and_hole_labels(tmp_path):
    ring = [[0, 0], [240, 0], [240, 240], [0, 240], [0, 0]]
    hole = [[80, 80], [160, 80], [160, 160], [80, 160], [80, 80]]
    feats = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring, hole]},
         "properties": {"classification": {"name": "tumor"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[8, 8], [40, 8], [40, 40], [8, 40], [8, 8]]]},
         "properties": {"classification": {"name": "cut"}}},
    ]  # fmt: skip
    cells = paint(
        write_geojson(tmp_path / "a.geojson", feats), label_map={"cut": "@hole"}, unannotated=2
    )
    assert cells[15, 15] == 2 and cells[2, 2] == 2  # interior ring and @hole back to "normal"
    assert cells[25, 5] == 0


def test_asap_xml_camelyon_groups(tmp_path):
    """CAMELYON16 XML: _0/_1 mapped to tumour, _2 is an exclusion (hole), dots skipped."""
    xml = ANNOTATIONS / "tcga_cr_7395_asap.xml"
    shape, cell = (446, 556), 8.0
    cells = np.full(shape, 2, np.uint8)
    resolver = LabelResolver(CM, {"_0": "tumor", "_1": "tumor"}, "error")
    with pytest.warns(UserWarning, match="1 annotation"), open_store(xml) as store:
        labels = store_labels(store)
        assert labels == {"_0": 1, "_1": 1, "_2": 1, "stroma": 2}
        resolver.check(labels, str(xml))
        check_bounds(store, (4443, 3567), str(xml))
        paint_store(store, cells, cell, resolver, np.ones(shape, bool), 2)
    assert cells[int(1300 / cell), int(2800 / cell)] == 0  # inside _0
    assert cells[int(1575 / cell), int(3125 / cell)] == 2  # inside the _2 exclusion
    assert cells[int(1400 / cell), int(900 / cell)] == 0  # inside _1
    assert cells[int(2500 / cell), int(3400 / cell)] == 1  # stroma band


def test_unknown_labels_error_names_them(tmp_path, feature):
    path = write_geojson(
        tmp_path / "a.geojson",
        [feature("Necrosis", 0, 0, 80, 80), feature("tumor", 80, 0, 160, 80)],
    )
    with pytest.raises(InputError, match=r"'Necrosis' \(1\).*label_map.*unknown_labels='ignore'"):
        paint(path)
    cells = paint(path, unknown="ignore", unannotated=2)
    assert cells[2, 2] == 2 and cells[2, 12] == 0  # the unknown object is dropped, not painted


def _poly(ring, *holes, name="tumor"):
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring, *holes]},
        "properties": {"classification": {"name": name}},
    }


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


@pytest.mark.parametrize("island_first", [True, False])
def test_multipolygon_island_in_another_parts_hole_keeps_its_class(tmp_path, island_first):
    """QuPath MultiPolygon: part A is a ring with a hole, part B an island inside that hole.
    The island is annotated tissue whichever order the parts are listed in."""
    ring = [_square(0, 0, 240, 240), _square(60, 60, 180, 180)]  # part A, hole 60-180
    island = [_square(96, 96, 144, 144)]  # part B, inside A's hole
    parts = [island, ring] if island_first else [ring, island]
    feat = {
        "type": "Feature",
        "geometry": {"type": "MultiPolygon", "coordinates": parts},
        "properties": {"classification": {"name": "tumor"}},
    }
    cells = paint(write_geojson(tmp_path / "a.geojson", [feat]), unannotated=2)
    assert cells[15, 15] == 0  # island centre (120, 120)
    assert cells[9, 9] == 2  # in A's hole, outside the island (76, 76)
    assert cells[2, 2] == 0  # part A


@pytest.mark.parametrize("reverse", [False, True])
def test_nested_features_do_not_depend_on_feature_order(tmp_path, reverse):
    """Stroma with a hole, a tumour island in the hole, an equal-area pair of classes: the same
    map whichever order the features are listed in."""
    feats = [
        _poly(_square(0, 0, 240, 240), _square(60, 60, 180, 180), name="stroma"),
        _poly(_square(96, 96, 144, 144), name="tumor"),
        _poly(_square(248, 0, 280, 32), name="normal"),
        _poly(_square(248, 0, 280, 32), name="tumor"),  # same geometry and area
    ]
    cells = paint(write_geojson(tmp_path / "a.geojson", feats[::-1] if reverse else feats))
    assert cells[15, 15] == 0 and cells[2, 2] == 1 and cells[9, 9] == 255
    assert cells[1, 32] == 2  # an exact tie: the later class of the list on top, in any order


@pytest.mark.parametrize("fix", ["ignore", "hole"])
def test_unclassified_region_around_classes_keeps_them(tmp_path, fix):
    """A QuPath export with an unclassified region drawn around the classified ones: both
    fixes the error suggests keep the classes inside (the unclassified object alone goes)."""
    feats = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(0, 0, 320, 320)]},
         "properties": {"objectType": "annotation"}},  # no classification
        _poly(_square(16, 16, 96, 96), name="tumor"),
        _poly(_square(160, 160, 240, 240), name="stroma"),
    ]  # fmt: skip
    path = write_geojson(tmp_path / "a.geojson", feats)
    with pytest.raises(InputError, match="<unclassified>"):
        paint(path)
    if fix == "ignore":
        cells = paint(path, unknown="ignore", unannotated=2)
    else:
        cells = paint(path, label_map={"<unclassified>": "@hole"}, unannotated=2)
    assert cells[5, 5] == 0 and cells[25, 25] == 1  # the classes survive
    assert cells[35, 5] == 2  # the rest of the unclassified region: unannotated


def test_hole_inside_a_region_still_cuts_it(tmp_path):
    """A smaller exclusion drawn inside a class region cuts it; a class island inside the
    exclusion is kept (CAMELYON: tumour, exclusion, tumour island)."""
    feats = [
        _poly(_square(0, 0, 320, 320), name="tumor"),
        _poly(_square(80, 80, 240, 240), name="cut"),
        _poly(_square(144, 144, 176, 176), name="tumor"),
    ]
    cells = paint(
        write_geojson(tmp_path / "a.geojson", feats), label_map={"cut": "@hole"}, unannotated=2
    )
    assert cells[2, 2] == 0 and cells[12, 12] == 2 and cells[20, 20] == 0


def test_label_map_to_unknown_class_is_refused():
    with pytest.raises(InputError, match="not a class"):
        LabelResolver(CM, {"Tumour": "tumour"}, "error")


def test_out_of_slide_coordinates(tmp_path, feature):
    path = write_geojson(
        tmp_path / "a.geojson",
        [feature("tumor", 0, 0, 80, 80), feature("stroma", 900, 10, 5000, 90)],
    )
    with (
        open_store(path) as store,
        pytest.raises(
            InputError, match=r"1 annotation\(s\) lie outside.*'stroma'.*annotation_scale"
        ),
    ):
        check_bounds(store, (1000, 800), str(path))


def test_annotation_scale(tmp_path, feature):
    path = write_geojson(tmp_path / "a.geojson", [feature("tumor", 10, 10, 20, 20)])
    with open_store(path, scale=4.0) as store:
        (ann,) = store.values()
        assert ann.geometry.bounds == (40.0, 40.0, 80.0, 80.0)


@pytest.mark.parametrize("text", ["{not json", '{"type": "Polygon"}'])
def test_malformed_geojson(tmp_path, text):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(InputError, match="bad.geojson"), open_store(path):
        pass


def test_malformed_xml(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<ASAP_Annotations><Annotations><Annotation>")
    with pytest.raises(InputError, match="bad.xml"), open_store(path):
        pass


def test_tissue_mask_on_real_and_blank_images(shared_data, drawn_slide):
    from htd_plugins.slides.wsi import Slide

    slide = Slide(shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs", slide_mpp=2.0)
    thumb = slide.thumbnail(16.0)
    mask = tissue_mask(thumb, 16.0)
    assert 0.4 < mask.mean() < 0.8
    grey = thumb.mean(axis=2)
    assert grey[mask].mean() < grey[~mask].mean() - 30
    blank = np.clip(np.random.default_rng(0).normal(242, 2, (100, 120, 3)), 0, 255).astype(np.uint8)
    assert not tissue_mask(blank, 8.0).any()
    assert tissue_mask(blank, 8.0, "none").all()
    assert resize_nearest(mask, (10, 12)).shape == (10, 12)


def test_rasterised_cells_are_exactly_those_with_centre_inside():
    """OpenCV fill + exact boundary decision == shapely point-in-polygon on every cell."""
    import shapely
    from shapely.geometry import Polygon

    from htd_plugins.slides.annotation_files import _polygonal
    from htd_plugins.slides.annotations import _fill

    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(3, 12))
        ang, rad = np.sort(rng.uniform(0, 2 * np.pi, n)), rng.uniform(5, 150, n)
        cx, cy = rng.uniform(100, 300, 2)
        poly = _polygonal(Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
        if rng.random() < 0.3:
            poly = poly.difference(
                Polygon([(cx - 15, cy - 15), (cx + 20, cy - 10), (cx + 10, cy + 25)])
            )
        cell = float(rng.choice([1.0, 4.0, 7.3]))
        shape, origin = (
            (int(460 / cell), int(460 / cell)),
            (int(rng.integers(0, 5)), int(rng.integers(0, 5))),
        )
        r, c = np.mgrid[: shape[0], : shape[1]]
        expected = shapely.contains_xy(
            poly, (c + origin[1] + 0.5) * cell, (r + origin[0] + 0.5) * cell
        )
        assert np.array_equal(_fill(poly, origin, shape, cell), expected)


def test_asap_group_none_is_listed_and_mapped_by_its_name(tmp_path):
    """Issue 27: ASAP's group "None" was shown as <unclassified> and label_map could not
    address it; it is a group name like any other (a YAML ``None:`` or ``null:`` key)."""
    xml = tmp_path / "none.xml"
    ring = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>'
                   for i, (x, y) in enumerate([(8, 8), (72, 8), (72, 72), (8, 72)]))  # fmt: skip
    xml.write_text(
        '<ASAP_Annotations><Annotations><Annotation Name="A" Type="Polygon" PartOfGroup="None">'
        f"<Coordinates>{ring}</Coordinates></Annotation></Annotations></ASAP_Annotations>"
    )
    shape, cell = (10, 10), 8.0
    with open_store(xml) as store:
        labels = store_labels(store)
        assert labels == {"None": 1}
        with pytest.raises(InputError, match=r"'None' \(1\)"):
            LabelResolver(CM, None, "error").check(labels, str(xml))
        for key in ("None", None):
            cells = np.full(shape, 2, np.uint8)
            resolver = LabelResolver(CM, {key: "tumor"}, "error")
            resolver.check(labels, str(xml))
            paint_store(store, cells, cell, resolver, np.ones(shape, bool), 2)
            assert cells[4, 4] == 0  # painted as tumour
