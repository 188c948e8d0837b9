"""``htd generate``: datasets from real masks or mask folders, resumable, with provenance."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from htd_core import Pipeline
from htd_core.cli import main
from htd_core.dataset import Dataset, DatasetWriter
from htd_core.testing import synthetic_sample
from htd_plugins.condition_builders import CropBank


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny controlnet_ldm trained on semantic_map + crop, saved as a pipeline folder."""
    root = tmp_path_factory.mktemp("gen")
    samples = [synthetic_sample(16, seed=s) for s in range(4)]
    crop = {"fixed_size": 6, "min_size": 2}
    pipe = Pipeline(
        condition_builders=["semantic_map", {"name": "crop", **crop}],
        backbone={"name": "controlnet_ldm", "preset": "tiny", "num_inference_steps": 2},
    )
    pipe.fit(samples, steps=2, vae_steps=2, batch_size=2, progress=False, tensorboard=False)
    pipe.save_pretrained(root / "model")
    with DatasetWriter(root / "real", samples[0].class_map) as writer:
        for s in samples[:3]:
            writer.write(s)
    CropBank.from_samples(samples, size=6, min_size=2).save(root / "bank.safetensors")
    return root


def rows(folder) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_generate_from_real_dataset_resumes(model, tmp_path, builtin_manager):
    out = tmp_path / "syn"
    base = [
        "generate",
        str(model / "model"),
        str(out),
        "--dataset",
        str(model / "real"),
        "--seed",
        "7",
    ]
    assert main([*base, "--limit", "2"]) == 0
    first = [np.asarray(Image.open(out / "images" / f"00000{i}.png")) for i in range(2)]
    assert main(base) == 0  # resumes: generates only the third
    data = Dataset(out)
    assert len(data) == 3
    assert [np.array_equal(first[i], data[i].image) for i in range(2)] == [True, True]
    manifest = rows(out)
    assert [r["seed"] for r in manifest] == ["7", "8", "9"]
    prov = json.loads(manifest[0]["crop_provenance"])
    assert {p["source"] for p in prov.values() if p and "source" in p} == {"sample"}
    assert np.array_equal(data[0].mask, Dataset(model / "real")[0].mask)
    fresh = tmp_path / "fresh"
    assert main([base[0], base[1], str(fresh), *base[3:]]) == 0
    # image i depends on seed + i only (up to float rounding between batch shapes)
    assert np.abs(Dataset(fresh)[2].image.astype(int) - data[2].image).max() <= 1


def test_generate_from_masks_with_crop_bank(model, tmp_path, builtin_manager):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=9).mask).save(masks / "drawn.png")
    out = tmp_path / "syn"
    args = ["generate", str(model / "model"), str(out), "--masks", str(masks),
            "--crop-bank", str(model / "bank.safetensors"), "--guidance", "2"]  # fmt: skip
    assert main(args) == 0
    manifest = rows(out)
    assert manifest[0]["layout"] == "drawn.png"
    prov = json.loads(manifest[0]["crop_provenance"])
    assert {p["source"] for p in prov.values() if p and "source" in p} == {"bank"}


def test_generate_errors(model, tmp_path, builtin_manager, capsys):
    out = tmp_path / "syn"
    base = ["generate", str(model / "model"), str(out), "--dataset", str(model / "real")]
    assert main([*base, "--limit", "1"]) == 0
    assert main([*base, "--guidance", "3"]) == 2
    assert "other options (guidance)" in capsys.readouterr().err
    masks = tmp_path / "masks"
    masks.mkdir()
    bad = synthetic_sample(16).mask.copy()
    bad[3, 3] = 7
    Image.fromarray(bad).save(masks / "bad.png")
    assert (
        main(["generate", str(model / "model"), str(tmp_path / "o2"), "--masks", str(masks)]) == 2
    )
    assert "class indices [7]" in capsys.readouterr().err
    assert main(["generate", str(tmp_path), str(tmp_path / "o3"), "--masks", str(masks)]) == 2
    assert "is not a saved pipeline" in capsys.readouterr().err
    # layouts without images need a crop bank for the crop half of the condition
    Image.fromarray(synthetic_sample(16).mask).save(masks / "bad.png")
    assert (
        main(["generate", str(model / "model"), str(tmp_path / "o4"), "--masks", str(masks)]) == 2
    )
    assert "bank" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                str(model / "model"),
                str(tmp_path / "o5"),
                "--masks",
                str(masks),
                "--unconditional",
            ]
        )
        == 0
    )


def test_from_pretrained_reproduces_htd_generate_byte_for_byte(model, tmp_path, builtin_manager):
    """The CLI is a thin caller of Pipeline: same folder, layouts and seed -> same bytes."""
    out = tmp_path / "cli"
    args = ["generate", str(model / "model"), str(out), "--dataset", str(model / "real")]
    assert main([*args, "--seed", "5"]) == 0
    layouts = list(Dataset(model / "real"))
    samples = Pipeline.from_pretrained(model / "model").generate(layouts, seed=5)
    written = Dataset(out)
    assert len(samples) == len(written) == 3
    for mine, cli, row in zip(samples, written, rows(out), strict=True):
        assert mine.image.tobytes() == cli.image.tobytes()
        assert json.loads(row["crop_provenance"]) == mine.meta["crop_provenance"]
    # the null condition (unconditional) goes through the same loop
    null = Pipeline.from_pretrained(model / "model").generate(layouts[:1], unconditional=True)
    assert null[0].meta["crop_provenance"] is None and null[0].image.shape == (16, 16, 3)
