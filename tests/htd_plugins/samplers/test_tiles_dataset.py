"""Train on what `htd sample` wrote: the tiles sampler reads an htd dataset's own classes.json
and manifest; a missing folder says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import htd_core
from htd_core.cli import main
from htd_core.dataset import Dataset
from htd_core.errors import InputError


@pytest.fixture
def tile_folder(tmp_path):
    """Three 32 px tiles of two source images, left half code 0, right half code 1."""
    root = tmp_path / "tiles"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 1
    for name in ("srcA_r0_c0", "srcA_r0_c1", "srcB_r0_c0"):
        image = rng.integers(0, 256, (32, 32, 3), np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def test_sampled_dataset_is_a_training_source(tile_folder, tmp_path, capsys):
    out = tmp_path / "patches"
    argv = [
        "sample",
        "tiles",
        "--out",
        str(out),
        "-o",
        f"root={tile_folder}",
        "-o",
        "classes=[tumor, stroma]",
    ]
    assert main(argv) == 0
    assert (out / "contact_sheet.png").is_file()
    data = Dataset(out)
    # no classes given: they come from the dataset's classes.json, colours included
    sampler = htd_core.create("patch_samplers", "tiles", root=str(out))
    assert sampler.class_map == data.class_map
    assert sampler.expected_samples() == len(data) == 3
    samples = list(sampler)
    assert [s.meta["slide_id"] for s in samples] == [r["slide_id"] for r in data.rows]
    assert len({s.meta["slide_id"] for s in samples}) == 2  # split by source still works
    for s, i in zip(samples, range(len(data)), strict=True):
        assert np.array_equal(s.mask, data[i].mask)
    # a dataset whose classes.json names other classes than the codes' order is read by name
    doc = json.loads((out / "classes.json").read_text())
    assert doc["names"] == ["tumor", "stroma"]


def test_resumed_sample_says_so(tile_folder, tmp_path, capsys):
    out = tmp_path / "patches"
    base = [
        "sample",
        "tiles",
        "--out",
        str(out),
        "-o",
        f"root={tile_folder}",
        "-o",
        "classes=[a, b]",
    ]
    assert main([*base, "--limit", "1"]) == 0
    capsys.readouterr()
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "1 samples already written" in err


def test_missing_folder_says_it_does_not_exist(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        htd_core.create("patch_samplers", "tiles", root=str(tmp_path / "nowhere"), classes=["a"])


def test_htd_train_on_what_htd_sample_wrote(tile_folder, tmp_path, capsys):
    out = tmp_path / "patches"
    sample = [
        "sample",
        "tiles",
        "--out",
        str(out),
        "-o",
        f"root={tile_folder}",
        "-o",
        "classes=[a, b]",
    ]
    assert main(sample) == 0
    config = tmp_path / "p.yaml"
    config.write_text(
        "condition_builders: [semantic_map]\n"
        "backbone: {name: controlnet_ldm, preset: tiny}\n"
        "fit: {steps: 1, vae_steps: 1, batch_size: 2, tensorboard: false, progress: false}\n"
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--data", str(out), "--out", str(run)]) == 0
    saved = json.loads((run / "model" / "htd_config.json").read_text())
    assert saved["class_map"]["names"] == ["a", "b"]  # from the dataset's classes.json
    assert (run / "model" / "pipeline.yaml").is_file()
