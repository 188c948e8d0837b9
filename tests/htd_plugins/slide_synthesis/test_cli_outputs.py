"""`htd generate-slide` as a command: its folder is created, a layout beyond --size is an
error naming both sizes unless --crop-layout (which says what was cut), a preview is written,
and library log lines reach stderr only, from WARNING up."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from htd_core.cli import main
from htd_plugins.slide_synthesis import output_paths

MPP = 2.0


def test_crop_layout_new_folder_and_preview(slide_model, tmp_path, builtin_manager, draw, capsys):
    shapes = [("gland", draw.square(10, 10, 20)), ("gland", draw.square(50, 30, 16)),
              ("gland", draw.square(80, 50, 30))]  # the last reaches 110 x 80 px  # fmt: skip
    geo = draw.write_geojson(tmp_path / "drawn.geojson", shapes)
    out = tmp_path / "new" / "folder" / "slide.tif"
    args = ["generate-slide", str(slide_model / "model"), "--map", str(geo), "--out", str(out),
            "--mpp", str(MPP), "--size", "90", "70", "--fill", "stroma",
            "--crop-bank", str(slide_model / "bank.safetensors"), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "extend to 110 x 80 px, beyond the canvas size 90 x 70 px" in err[-1]
    assert "--crop-layout" in err[-1] and not (tmp_path / "new").exists()  # nothing made
    assert main([*args, "--crop-layout"]) == 0
    printed = capsys.readouterr()
    assert ("--crop-layout: 1 of 3 annotations extend beyond the 90 x 70 px canvas (they reach "
            "110 x 80 px): 0 dropped wholly, 1 cut; 2 kept whole") in printed.err  # fmt: skip
    assert [line.split(":")[0] for line in printed.out.splitlines()] == [
        "synthetic slide",
        "beside it",
    ]
    assert "slide.preview.png" in printed.out and out.is_file()
    preview = np.asarray(Image.open(output_paths(out)["preview"]).convert("RGB"))
    assert preview.shape[0] > 100 and preview.shape[1] > 2 * 100 and preview.std() > 0


def test_library_log_lines_go_to_stderr_from_warning_up(capsys):
    import tiatoolbox

    from htd_plugins.commands.logs import route_logging

    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    tia = logging.StreamHandler(__import__("sys").stdout)  # as tiatoolbox installs its own
    tia.setFormatter(logging.Formatter("|%(asctime)s.%(msecs)03d| [%(levelname)s] %(message)s"))
    root.handlers = [tia]
    try:
        route_logging("generate-slide")
        where = str(Path(tiatoolbox.__file__).parent / "wsicore" / "wsireader.py")
        for lvl, text in ((logging.INFO, "an info line"), (logging.WARNING, "a warning line")):
            root.handle(root.makeRecord("root", lvl, where, 1, text, (), None))
        out, err = capsys.readouterr()
    finally:
        root.handlers, root.level = saved, level
    assert out == "" and "an info line" not in err
    assert err.strip() == "htd generate-slide: WARNING: a warning line"
