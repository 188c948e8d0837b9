"""The README's quick start: it opens with a real picture that examples/readme_figure.py draws,
links the longer paths, and composes GlaS with its official split (its code blocks themselves
run in tests/test_docs.py)."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htd_core import Pipeline
from htd_core.dataset import DatasetWriter
from htd_core.testing import synthetic_sample

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PICTURE = "docs/images/overview.png"


def readme_figure():
    """examples/readme_figure.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "readme_figure", ROOT / "examples" / "readme_figure.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_opens_with_the_picture():
    """The picture comes before any command, and it is a real figure of four rows."""
    first_block = README.index("```")
    assert f"]({PICTURE})" in README[:first_block]
    with Image.open(ROOT / PICTURE) as im:
        width, height = im.size
    assert im.format == "PNG" and width >= 400 and height >= 400
    assert "examples/readme_figure.py" in README[:first_block]  # how to redraw it


def test_quick_start_states_a_time_and_an_output_per_step():
    quick = README[README.index("## Quick start") : README.index("## The stages")]
    assert "HTD_THREADS=1" in quick and "2-core" in quick  # what the times were measured on
    table = [line for line in quick.splitlines() if re.match(r"\| \d\. ", line)]
    assert [line[2] for line in table] == ["1", "1", "2", "3", "4", "5"]
    for line in table:
        measured = line.split("|")[2]
        assert re.search(r"\d+ (s|min)", measured), f"no time in {line!r}"
    for target in ("examples/quickstart.py", "examples/walkthrough.ipynb", "make docs"):
        assert target in quick, f"the quick start does not point to {target}"


def test_python_block_uses_the_official_split():
    """The README composes GlaS as the CLI does (split=train / split=test), never at random."""
    python = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
    assert python and "split_by_source" not in "".join(python)
    assert '"split": "train"' in python[0] and 'split="test"' in python[0]
    assert "DatasetWriter(" in python[0] and "save_grid(" in python[0]  # saved and looked at


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny dual-conditioned model and a layout folder of five source images."""
    root = tmp_path_factory.mktemp("figure")
    samples = [synthetic_sample(16, seed=s) for s in range(5)]
    pipe = Pipeline(
        condition_builders=["semantic_map", {"name": "crop", "fixed_size": 6, "min_size": 2}],
        backbone={"name": "controlnet_ldm", "preset": "tiny"},
        stage_options={"generate": {"num_inference_steps": 2}},
    )
    pipe.fit(samples, steps=2, vae_steps=2, batch_size=2, progress=False, tensorboard=False)
    pipe.save_pretrained(root / "model")
    with DatasetWriter(root / "layouts", samples[0].class_map) as writer:
        for i, s in enumerate(samples):
            writer.write(replace(s, meta={"slide_id": f"src{i}"}))
    return root


def test_readme_figure_draws_map_crops_generated_real(tiny_run, tmp_path, capsys):
    out = tmp_path / "figures" / "overview.png"  # its folder is created
    argv = ["--model", str(tiny_run / "model"), "--layouts", str(tiny_run / "layouts")]
    assert readme_figure().main([*argv, "--out", str(out), "--n", "3", "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] > picture.shape[1] * 0.6  # three rows of four columns
    assert picture.std() > 10  # drawn, not blank


def test_readme_figure_picks_one_layout_per_source(tiny_run):
    from htd_core.dataset import Dataset

    data = Dataset(tiny_run / "layouts")
    picked = [s.meta["slide_id"] for s in readme_figure().pick_layouts(data, 4, seed=0)]
    assert len(set(picked)) == 4  # four source images
    assert picked == [s.meta["slide_id"] for s in readme_figure().pick_layouts(data, 4, seed=0)]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--n", "9"], "holds layouts of 5 source image(s); --n 9 needs 9"),
        (["--out", "figure.jpg"], "--out figure.jpg: give a .png file path"),
        (["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_readme_figure_bad_input_is_one_line_exit_2(tiny_run, tmp_path, capsys, args, expected):
    base = {"--model": str(tiny_run / "model"), "--layouts": str(tiny_run / "layouts"),
            "--out": str(tmp_path / "f.png")}  # fmt: skip
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv]
    assert readme_figure().main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "f.png").exists()
