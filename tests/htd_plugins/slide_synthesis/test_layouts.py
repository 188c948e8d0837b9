"""Layout sources (label mask, pseudo map, drawn annotations, a real slide's annotations) and
the bad inputs of ``htd generate-slide``: each fails early with a message naming the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htd_core.cli import main
from htd_core.errors import InputError
from htd_plugins.slide_synthesis import SlideLayout, generate_slide, read_layout

MPP = 2.0  # um/px the conftest's model was trained at


def test_label_mask_with_named_codes_and_a_pseudo_map(pipe, tmp_path):
    cm = pipe.backbone.class_map
    codes = np.array([[7, 7, 3], [3, 255, 7]], np.uint8)
    Image.fromarray(codes).save(tmp_path / "mask.png")
    (tmp_path / "mask.json").write_text(json.dumps({"7": "gland", "3": "stroma"}))
    out = read_layout(tmp_path / "mask.png", cm, mpp=MPP, fill="stroma")
    assert out.mask.tolist() == [[1, 1, 0], [0, 0, 1]] and out.mpp == MPP
    with pytest.raises(InputError, match="no class"):
        read_layout(tmp_path / "mask.png", cm, mpp=MPP)  # 255 without fill
    # a discovery pseudo map: codes named by its sidecar, one cell per map_mpp um
    grid = np.array([[0, 1], [1, 255]], np.uint8)
    Image.fromarray(grid).save(tmp_path / "slide-k2.png")
    side = {"names": ["phenotype_0", "phenotype_1"], "map_mpp": 32.0, "downsample": 64}
    (tmp_path / "slide-k2.json").write_text(json.dumps(side))
    pseudo = read_layout(tmp_path / "slide-k2.png", cm, fill="@ignore",
                         label_map={"phenotype_0": "stroma", "phenotype_1": "gland"})  # fmt: skip
    assert pseudo.mpp == 32.0 and pseudo.info["kind"] == "pseudo map"
    assert pseudo.rescaled(MPP).mask.shape == (32, 32)
    assert pseudo.mask[1, 1] == cm.ignore_index


def test_real_slide_annotations_rasterised_at_the_model_mpp(pipe, tmp_path, draw):
    image = np.full((200, 300, 3), 230, np.uint8)
    Image.fromarray(image).save(tmp_path / "real.png")
    geo = draw.write_geojson(
        tmp_path / "real.geojson",
        [("stroma", draw.square(40, 20, 160)), ("gland", draw.square(100, 80, 60))],
    )
    out = read_layout(
        geo, pipe.backbone.class_map, mpp=2.0, slide=tmp_path / "real.png", slide_mpp=1.0
    )
    assert out.mask.shape == (80, 80)  # the annotations' 160 x 160 level-0 px at half resolution
    assert out.mask[45, 45] == 1 and out.mask[5, 5] == 0 and out.mpp == 2.0
    assert out.info["region_level0"] == [40, 20, 160, 160]
    assert out.info["kind"] == "slide annotations" and "real" not in json.dumps(out.info)


def test_a_class_the_model_does_not_know_is_named_with_the_models_classes(pipe, tmp_path, draw):
    geo = draw.write_geojson(
        tmp_path / "l.geojson",
        [("tumour", draw.square(0, 0, 40)), ("gland", draw.square(40, 0, 40))],
    )
    with pytest.raises(InputError) as err:
        read_layout(geo, pipe.backbone.class_map, mpp=MPP, fill="stroma")
    assert "'tumour'" in str(err.value) and "['stroma', 'gland']" in str(err.value)
    ok = read_layout(
        geo,
        pipe.backbone.class_map,
        mpp=MPP,
        size=(100, 40),
        label_map={"tumour": "gland"},
        fill="stroma",
    )
    assert set(np.unique(ok.mask)) == {0, 1}
    Image.fromarray(np.full((8, 8), 5, np.uint8)).save(tmp_path / "codes.png")
    with pytest.raises(InputError, match=r"code 5.*\['stroma', 'gland'\]"):
        read_layout(tmp_path / "codes.png", pipe.backbone.class_map, mpp=MPP)


def test_an_mpp_far_from_the_models_is_refused_or_rescaled(pipe, tmp_path, draw):
    far = SlideLayout(draw.blob_mask(12, 12), pipe.backbone.class_map, 8.0)
    with pytest.raises(InputError, match=r"8 um/px.*2 um/px.*--rescale"):
        generate_slide(pipe, far, tmp_path / "far.tif", progress=False)
    assert not list(tmp_path.iterdir())  # nothing written
    summary = generate_slide(pipe, far, tmp_path / "far.tif", rescale=True, progress=False)
    assert summary["mpp"] == MPP and (summary["width"], summary["height"]) == (48, 48)
    assert "rescaled from 8 to the model's 2 um/px" in summary["mpp_check"]
    pipe.backbone.mpp = None  # a model saved before htd recorded it
    near = SlideLayout(draw.blob_mask(32, 32), pipe.backbone.class_map, MPP)
    with pytest.raises(InputError, match="model_mpp"):
        generate_slide(pipe, near, tmp_path / "unknown.tif", progress=False)
    generate_slide(pipe, near, tmp_path / "known.tif", model_mpp=2.2, progress=False)


def test_bad_output_paths_and_a_layout_smaller_than_a_window(pipe, tmp_path, draw):
    lay = SlideLayout(draw.blob_mask(32, 32), pipe.backbone.class_map, MPP)
    from htd_plugins.slide_synthesis.api import check_output

    check_output(tmp_path / "missing" / "deeper" / "s.tif")  # a new folder: created when written
    assert not (tmp_path / "missing").exists()
    (tmp_path / "a-file").write_bytes(b"user data")
    with pytest.raises(InputError, match="is a file"):
        generate_slide(pipe, lay, tmp_path / "a-file" / "s.tif", progress=False)
    if os.geteuid() == 0:  # root writes anywhere permissions allow: use a kernel folder
        locked = Path("/proc/sys")
        if not locked.is_dir():
            pytest.skip("no unwritable folder for root on this system")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="not writable"):
        generate_slide(pipe, lay, locked / "s.tif", progress=False)
    with pytest.raises(InputError, match=r"\.tif"):
        generate_slide(pipe, lay, tmp_path / "s.png", progress=False)
    (tmp_path / "taken.tif").write_bytes(b"user data")
    with pytest.raises(InputError, match="does not replace"):
        generate_slide(pipe, lay, tmp_path / "taken.tif", progress=False)
    assert (tmp_path / "taken.tif").read_bytes() == b"user data"
    small = SlideLayout(draw.blob_mask(10, 40), pipe.backbone.class_map, MPP)
    with pytest.raises(InputError, match=r"smaller than one window of the model \(16 x 16 px"):
        generate_slide(pipe, small, tmp_path / "small.tif", progress=False)


def test_cli_bad_input_is_one_line_exit_2(slide_model, tmp_path, capsys, builtin_manager, draw):
    geo = draw.write_geojson(tmp_path / "l.geojson", [("tumour", draw.square(0, 0, 40))])
    args = ["generate-slide", str(slide_model / "model"), "--map", str(geo), "--out",
            str(tmp_path / "x.tif"), "--mpp", "2", "--fill", "stroma"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tumour" in err and "Traceback" not in err
    # a missing folder is created, but only once the inputs are valid: not for a bad layout
    assert main([*args[:5], str(tmp_path / "nope" / "x.tif"), *args[6:]]) == 2
    assert "tumour" in capsys.readouterr().err and not (tmp_path / "nope").exists()
    good = draw.write_geojson(tmp_path / "g.geojson", [("gland", draw.square(0, 0, 40))])
    no_bank = ["generate-slide", str(slide_model / "model"), "--map", str(good), "--out",
               str(tmp_path / "y.tif"), "--mpp", "2", "--size", "48", "48", "--fill", "stroma"]  # fmt: skip
    assert main(no_bank) == 2  # layouts have no image: crops need a bank, said before any work
    assert "bank" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.geojson", "l.geojson"]


def test_a_real_slides_asap_annotations_as_a_layout(pipe, shared_data):
    """The TCGA slide's hand-drawn ASAP XML (tests/data/annotations: tumour groups _0 and _1,
    a CAMELYON16 _2 exclusion, stroma), rasterised at 8 um/px over the annotations' extent,
    its groups mapped to the tiny model's classes."""
    xml = Path(__file__).resolve().parents[2] / "data" / "annotations" / "tcga_cr_7395_asap.xml"
    slide = shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
    names = {"_0": "gland", "_1": "gland"}
    out = read_layout(xml, pipe.backbone.class_map, mpp=8.0, slide=slide, slide_mpp=2.0,
                      label_map=names, fill="@ignore")  # fmt: skip
    x0, y0, w, h = out.info["region_level0"]
    assert out.mask.shape == (round(h / 4), round(w / 4))
    assert set(np.unique(out.mask)) == {0, 1, 255}
    with pytest.raises(
        InputError, match=r"'_1' that the model does not know.*\['stroma', 'gland'\]"
    ):
        read_layout(xml, pipe.backbone.class_map, mpp=8.0, slide=slide, slide_mpp=2.0,
                    label_map={"_0": "gland"}, fill="@ignore")  # fmt: skip
