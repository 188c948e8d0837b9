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
        backbone={"name": "controlnet_ldm", "preset": "tiny"},
        stage_options={"generate": {"num_inference_steps": 2}},
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
        "--out",
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
    assert main([*base[:3], str(fresh), *base[4:]]) == 0
    # image i depends on seed + i only (up to float rounding between batch shapes)
    assert np.abs(Dataset(fresh)[2].image.astype(int) - data[2].image).max() <= 1


def test_generate_from_masks_with_crop_bank(model, tmp_path, builtin_manager):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=9).mask).save(masks / "drawn.png")
    out = tmp_path / "syn"
    args = ["generate", str(model / "model"), "--out", str(out), "--masks", str(masks),
            "--crop-bank", str(model / "bank.safetensors"), "--guidance", "2"]  # fmt: skip
    assert main(args) == 0
    manifest = rows(out)
    assert manifest[0]["layout"] == "../masks#0"  # relative to the dataset, no file name
    settings = json.loads((out / "generate.json").read_text())
    # what was used, resolved: --guidance over the model folder's generate: defaults (2 steps)
    used = {"guidance_scale": 2.0, "scheduler": "ddim", "num_inference_steps": 2, "seed": 0}
    assert settings["generation"] == used
    assert {k: manifest[0][k] for k in used} == {k: str(v) for k, v in used.items()}
    assert settings["layouts"] == "../masks"
    assert settings["crop_bank"].startswith("../")
    assert settings["crop_bank"].endswith("/bank.safetensors")
    assert (
        str(tmp_path)
        not in (out / "generate.json").read_text() + (out / "manifest.csv").read_text()
    )
    prov = json.loads(manifest[0]["crop_provenance"])
    assert {p["source"] for p in prov.values() if p and "source" in p} == {"bank"}


def test_generate_writes_a_contact_sheet_of_map_crops_and_image(
    model, tmp_path, builtin_manager, capsys
):
    from htd_plugins.commands.sheets import _crop_pixels, _provenance

    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=9).mask).save(masks / "drawn.png")
    bank = str(model / "bank.safetensors")
    for source in (
        ["--dataset", str(model / "real")],
        ["--masks", str(masks), "--crop-bank", bank],
    ):
        out = tmp_path / f"syn-{source[0].strip('-')}"
        assert main(["generate", str(model / "model"), "--out", str(out), *source]) == 0
        sheet = out / "contact_sheet.png"
        assert (
            f"contact sheet {sheet} (map | real crops | synthetic image" in capsys.readouterr().out
        )
        width, height = Image.open(sheet).size
        data = Dataset(out)
        crops = len(_provenance(data[0].meta))
        assert crops >= 1 and width >= (2 + crops) * 138  # map | a panel per crop | image
        assert height >= len(data) * 144  # a row per sample (side 128 + caption)
    # the crop panels are the crops as cut: here the bank's own pixels
    prov = _provenance(data[0].meta)
    name, p = next((n, p) for n, p in prov.items() if p)
    expected = CropBank.load(bank).crops(name)[int(p["bank_index"])].image
    assert np.array_equal(_crop_pixels(p, name, CropBank.load(bank), None), expected)


def test_generate_errors(model, tmp_path, builtin_manager, capsys):
    out = tmp_path / "syn"
    base = ["generate", str(model / "model"), "--out", str(out), "--dataset", str(model / "real")]
    assert main([*base, "--limit", "1"]) == 0
    assert main([*base, "--guidance", "3"]) == 2
    assert "other options (generation)" in capsys.readouterr().err
    masks = tmp_path / "masks"
    masks.mkdir()
    bad = synthetic_sample(16).mask.copy()
    bad[3, 3] = 7
    Image.fromarray(bad).save(masks / "bad.png")
    assert (
        main(
            ["generate", str(model / "model"), "--out", str(tmp_path / "o2"), "--masks", str(masks)]
        )
        == 2
    )
    assert "class indices [7]" in capsys.readouterr().err
    assert (
        main(["generate", str(tmp_path), "--out", str(tmp_path / "o3"), "--masks", str(masks)]) == 2
    )
    assert "is not a saved pipeline" in capsys.readouterr().err
    # layouts without images need a crop bank for the crop half of the condition
    Image.fromarray(synthetic_sample(16).mask).save(masks / "bad.png")
    assert (
        main(
            ["generate", str(model / "model"), "--out", str(tmp_path / "o4"), "--masks", str(masks)]
        )
        == 2
    )
    assert "bank" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                str(model / "model"),
                "--out",
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
    args = ["generate", str(model / "model"), "--out", str(out), "--dataset", str(model / "real")]
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


def test_missing_crop_bank_leaves_nothing_behind_and_the_rerun_works(
    model, tmp_path, builtin_manager, capsys
):
    """Without a crop bank, OUT was created with an empty dataset, then the corrected rerun
    was refused ("generated with other options")."""
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=3).mask).save(masks / "m.png")
    out = tmp_path / "syn"
    args = ["generate", str(model / "model"), "--out", str(out), "--masks", str(masks)]
    assert main(args) == 2
    assert "bank" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--crop-bank", str(model / "bank.safetensors")]) == 0
    assert len(Dataset(out)) == 1


def test_resume_into_a_folder_of_another_model_is_refused(model, tmp_path, builtin_manager, capsys):
    """generate.json records the model by content: the same folder retrained (weights changed
    since) is another model and may not continue the dataset; a moved copy may."""
    import shutil

    import torch

    folder = tmp_path / "model"
    shutil.copytree(model / "model", folder)
    out = tmp_path / "syn"
    base = ["generate", str(folder), "--out", str(out), "--dataset", str(model / "real")]
    assert main([*base, "--limit", "1"]) == 0
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    assert main(["generate", str(moved), "--out", str(out), "--dataset", str(model / "real"),
                 "--limit", "2"]) == 0  # fmt: skip
    assert len(Dataset(out)) == 2
    pipe = Pipeline.from_pretrained(folder)
    with torch.no_grad():
        next(pipe.backbone.denoiser.parameters()).add_(0.5)  # "retrained"
    pipe.save_pretrained(folder)
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "started by another model" in err and "weights or configuration changed" in err
    assert len(Dataset(out)) == 2  # nothing mixed in


def test_rows_record_opaque_layout_and_crop_sources(model, tmp_path, builtin_manager):
    from htd_core.images import opaque_id

    out = tmp_path / "syn"
    assert (
        main(
            ["generate", str(model / "model"), "--out", str(out), "--dataset", str(model / "real")]
        )
        == 0
    )
    row = rows(out)[0]
    layout = opaque_id("synthetic-0")  # the layout's slide_id, as the one opaque-id rule gives it
    assert row["layout_source_id"] == layout and json.loads(row["crop_source_ids"]) == [layout]
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=9).mask).save(masks / "TCGA-AB-1234_r0_c1.png")
    out2 = tmp_path / "syn2"
    assert main(["generate", str(model / "model"), "--out", str(out2), "--masks", str(masks),
                 "--crop-bank", str(model / "bank.safetensors")]) == 0  # fmt: skip
    row = rows(out2)[0]
    assert row["layout_source_id"] == opaque_id("TCGA-AB-1234") == row["slide_id"]
    bank_sources = {opaque_id(f"synthetic-{s}") for s in range(4)}
    assert set(json.loads(row["crop_source_ids"])) <= bank_sources


def test_evaluate_refuses_a_set_generated_from_held_out_masks(
    model, tmp_path, builtin_manager, capsys
):
    """The leakage guard end to end: layouts (or crops) from the held-out set are named."""
    held_out = tmp_path / "held_out"
    with DatasetWriter(held_out, synthetic_sample(16).class_map) as writer:
        for s in range(10, 13):
            writer.write(synthetic_sample(16, seed=s))
    bad = tmp_path / "from_held_out"
    assert (
        main(["generate", str(model / "model"), "--out", str(bad), "--dataset", str(held_out)]) == 0
    )
    masks = tmp_path / "masks"  # training masks, crops from a bank cut from held-out images
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=1).mask).save(masks / "synthetic-1.png")
    CropBank.from_samples(list(Dataset(held_out)), size=6, min_size=2).save(tmp_path / "hb.st")
    crops = tmp_path / "held_out_crops"
    assert main(["generate", str(model / "model"), "--out", str(crops), "--masks", str(masks),
                 "--crop-bank", str(tmp_path / "hb.st")]) == 0  # fmt: skip
    from htd_core.images import opaque_id

    for syn, what in ((bad, "3 of 3 samples were generated from held-out layouts"),
                      (crops, "1 use crops cut from held-out images")):  # fmt: skip
        argv = ["evaluate", "--real", str(model / "real"), "--real-test", str(held_out),
                "--synthetic", f"s={syn}", "--out", str(tmp_path / "eval")]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "synthetic set 's' shares" in err and what in err, err
        assert any(opaque_id(f"synthetic-{s}") in err for s in range(10, 13))


def test_crop_bank_reaches_the_embedding_builder(model, tmp_path, builtin_manager, capsys):
    """--crop-bank is given to every builder that needs crops: the embedding-conditioned
    baseline generates from a folder of masks too."""
    samples = [synthetic_sample(16, seed=s) for s in range(4)]
    encoder = {"weights": "random", "arch_overrides": {"depth": 1}, "input_size": 32}
    pipe = Pipeline(
        condition_builders=[
            "semantic_map",
            {
                "name": "embedding",
                "encoder": "vit_small",
                "encoder_options": encoder,
                "crop_options": {"fixed_size": 6, "min_size": 2},
            },
        ],  # fmt: skip
        backbone={"name": "controlnet_ldm", "preset": "tiny"},
        stage_options={"generate": {"num_inference_steps": 2}},
    )
    pipe.fit(samples, steps=1, vae_steps=1, batch_size=2, progress=False, tensorboard=False)
    pipe.save_pretrained(tmp_path / "embedding_model")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(synthetic_sample(16, seed=9).mask).save(masks / "drawn.png")
    args = ["generate", str(tmp_path / "embedding_model"), "--out", str(tmp_path / "syn"),
            "--masks", str(masks)]  # fmt: skip
    assert main(args) == 2  # a layout without an image: the crops need a bank
    assert "bank" in capsys.readouterr().err
    assert main([*args, "--crop-bank", str(model / "bank.safetensors")]) == 0
    prov = json.loads(rows(tmp_path / "syn")[0]["crop_provenance"])
    assert {p["source"] for p in prov.values() if p and "source" in p} == {"bank"}


def test_resume_from_rewritten_layouts_is_refused(model, tmp_path, builtin_manager, capsys):
    """Resumes are keyed on the layouts' content: a layout dataset rewritten with other masks
    (same folder, same count) is other input, not more of the same."""
    import shutil

    layouts = tmp_path / "layouts"
    shutil.copytree(model / "real", layouts)
    out = tmp_path / "syn"
    args = ["generate", str(model / "model"), "--out", str(out), "--dataset", str(layouts)]
    assert main([*args, "--limit", "1"]) == 0
    shutil.rmtree(layouts)
    with DatasetWriter(layouts, synthetic_sample(16).class_map) as writer:
        for s in range(20, 23):
            writer.write(synthetic_sample(16, seed=s))
    assert main(args) == 2
    assert "other layouts or another crop bank" in capsys.readouterr().err
    assert len(Dataset(out)) == 1
