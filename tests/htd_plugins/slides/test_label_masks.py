from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from htd_core import ClassMap
from htd_core.errors import InputError
from htd_plugins.slides.label_masks import (
    check_label_colors,
    code_lut,
    color_code_names,
    load_code_names,
    mask_to_grid,
    read_label_mask,
)

CM = ClassMap(("tumor", "stroma", "normal"))


def test_discovery_pseudo_map_with_sidecar(tmp_path):
    """Pseudo maps from discovery: uint8 codes per patch-grid cell, 255 = none, JSON names."""
    codes = np.array([[0, 1, 255], [2, 1, 0]], np.uint8)
    Image.fromarray(codes).save(tmp_path / "map.png")
    (tmp_path / "map.json").write_text(json.dumps({"names": ["stroma", "tumor", "normal"]}))
    mask = read_label_mask(tmp_path / "map.png")
    names, downsample = load_code_names(None, tmp_path / "map.png")
    assert names == {0: "stroma", 1: "tumor", 2: "normal"} and downsample is None
    lut = code_lut(mask, names, CM, "error", "map.png")
    assert lut[mask].tolist() == [[1, 0, 255], [2, 0, 1]]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (["a", "b"], {0: "a", 1: "b"}),
        ({"3": "a", 7: "b"}, {3: "a", 7: "b"}),
    ],
)
def test_code_names_forms(tmp_path, spec, expected):
    assert load_code_names(spec, tmp_path / "m.png")[0] == expected
    (tmp_path / "names.json").write_text(json.dumps(spec))
    assert load_code_names(str(tmp_path / "names.json"), tmp_path / "m.png")[0] == expected


def test_unmapped_codes_error_or_ignore():
    mask = np.array([[0, 5], [1, 9]])
    with pytest.raises(
        InputError, match=r"codes 5 \(unnamed\), 9 \('necrosis'\).*unknown_labels='ignore'"
    ):
        code_lut(mask, {0: "tumor", 1: "stroma", 9: "necrosis"}, CM, "error", "m.png")
    lut = code_lut(mask, {0: "tumor", 1: "stroma", 9: "necrosis"}, CM, "ignore", "m.png")
    assert lut[mask].tolist() == [[0, 255], [1, 255]]
    assert (
        code_lut(mask, {0: "@ignore", 1: "tumor", 5: "normal", 9: "stroma"}, CM, "error", "m")[0]
        == 255
    )


def test_codes_default_to_class_order():
    lut = code_lut(np.array([[0, 2]]), None, CM, "error", "m.png")
    assert lut[[0, 2]].tolist() == [0, 2]


def test_aspect_ratio_mismatch_is_refused():
    mask = np.zeros((100, 100), np.int64)
    with pytest.raises(InputError, match="aspect 1.000.*aspect 1.246.*not a downsample"):
        mask_to_grid(mask, (10, 10), 8.0, (4443, 3567), None, "m.png")


def test_stretched_and_anchored_grids():
    mask = np.arange(12).reshape(3, 4)  # 4 x 3 cells over a 400 x 300 slide
    cells = mask_to_grid(mask, (6, 8), 50.0, (400, 300), None, "m")
    assert cells[0, 0] == 0 and cells[5, 7] == 11 and cells[2, 3] == 5
    overhang = np.arange(12).reshape(3, 4)  # 128-px patch grid over a 450 x 300 slide (ceil)
    cells = mask_to_grid(overhang, (3, 4), 100.0, (450, 300), 128.0, "m")
    assert cells[2, 3] == 6  # centre (350, 250): row 1, column 2 of the 128-px grid
    assert mask_to_grid(overhang, (3, 4), 100.0, (450, 300), None, "m")[2, 3] == 11  # stretched
    with pytest.raises(InputError, match="covering"):
        mask_to_grid(overhang, (3, 4), 100.0, (900, 300), 128.0, "m")


def test_p_mode_and_rgb_masks(tmp_path):
    p = Image.fromarray(np.array([[0, 3], [1, 2]], np.uint8), mode="P")
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    p.save(tmp_path / "p.png")
    assert read_label_mask(tmp_path / "p.png").tolist() == [[0, 3], [1, 2]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = [[1, 2], [3, 4]]
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "panda.png")
    assert read_label_mask(tmp_path / "panda.png", "red").tolist() == [[1, 2], [3, 4]]


def _painted(tmp_path):
    """Tumour painted red (left half), stroma green (right half)."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = (255, 0, 0)
    rgb[:, 3:] = (0, 255, 0)
    Image.fromarray(rgb).save(tmp_path / "painted.png")
    return tmp_path / "painted.png"


def test_rgb_painted_mask_is_refused_naming_its_colours(tmp_path):
    """Read by its red channel, the green stroma half would become code 0 = tumour."""
    with pytest.raises(
        InputError,
        match=r"painted in colours \(\(0, 255, 0\) x 12 px, \(255, 0, 0\) x 12 px\).*label_colors",
    ):
        read_label_mask(_painted(tmp_path))


def test_rgb_painted_mask_with_a_colour_table(tmp_path):
    colors = {"stroma": "#00ff00", "tumor": [255, 0, 0]}
    codes = read_label_mask(_painted(tmp_path), colors)
    names = color_code_names(colors)
    lut = code_lut(codes, names, CM, "error", "painted.png")
    assert (lut[codes][:, :3] == 0).all() and (lut[codes][:, 3:] == 1).all()  # tumour | stroma
    with pytest.raises(InputError, match=r"\(0, 255, 0\) x 12 px.*not in label_colors"):
        read_label_mask(_painted(tmp_path), {"tumor": [255, 0, 0]})
    stray = read_label_mask(_painted(tmp_path), {"tumor": [255, 0, 0]}, unknown="ignore")
    assert code_lut(stray, {0: "tumor"}, CM, "ignore", "m")[stray][0, 4] == CM.ignore_index


@pytest.mark.parametrize("bad", [{"tumor": [256, 0, 0]}, {"tumor": "red"}, "blue", []])
def test_label_colors_option_is_checked(bad):
    with pytest.raises(InputError, match="label_colors"):
        check_label_colors(bad)


def test_jpeg_label_mask_warns(tmp_path):
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(tmp_path / "m.jpg")
    with pytest.warns(UserWarning, match="lossy JPEG.*boundaries"):
        read_label_mask(tmp_path / "m.jpg")


def test_sixteen_bit_and_grey_rgb_masks_are_index_masks(tmp_path):
    Image.fromarray(np.array([[0, 300], [2, 1]], np.uint16)).save(tmp_path / "m16.png")
    assert read_label_mask(tmp_path / "m16.png").tolist() == [[0, 300], [2, 1]]
    grey = np.repeat(np.array([[0, 1], [2, 1]], np.uint8)[..., None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey_rgb.png")
    assert read_label_mask(tmp_path / "grey_rgb.png").tolist() == [[0, 1], [2, 1]]


def test_unreadable_mask(tmp_path):
    (tmp_path / "m.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read"):
        read_label_mask(tmp_path / "m.png")
    with pytest.raises(InputError, match="does not exist"):
        read_label_mask(tmp_path / "none.png")


def test_a_code_list_naming_a_class_twice_is_refused_naming_its_file(tmp_path):
    """Issue 27: a class list names each class once; a mapping may merge codes on purpose."""
    import re

    from htd_core.errors import InputError
    from htd_plugins.slides.label_masks import load_code_names

    codes = tmp_path / "codes.json"
    codes.write_text('["stroma", "tumor", "tumor"]')
    with pytest.raises(
        InputError, match=rf"label classes file {re.escape(str(codes))}: .*'tumor' twice"
    ):
        load_code_names(str(codes), tmp_path / "m.png")
    merged, _ = load_code_names({0: "stroma", 1: "tumor", 2: "tumor"}, tmp_path / "m.png")
    assert merged == {0: "stroma", 1: "tumor", 2: "tumor"}
