"""Distilled ViT-small: train on teacher labels, held-out metrics, save/load, student maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_plugins.discovery.classifier import StudentClassifier, heldout_mask
from htd_plugins.discovery.distill import distill, maps_with_classifier


@pytest.fixture(scope="module")
def student(cmu_run):
    out = cmu_run["root"] / "student"
    options = dict(input_size=16, epochs=1, batch_size=32, max_patches=160, block=4,
                   arch="vit_tiny_patch16_224", depth=1)  # fmt: skip
    config = distill(
        [cmu_run["root"] / "store"], cmu_run["root"] / "phenotypes", out,
        slides=[cmu_run["slide"]], progress=False, **options,
    )  # fmt: skip
    return out, config, options


def test_distill_reports_heldout_accuracy_per_level(student):
    out, config, _ = student
    m = config["metrics"]
    assert config["n_train"] + config["n_val"] == 160 and config["n_val"] > 0
    assert 0.0 <= m["top1"] <= m["top1_k50"] <= m["top1_k20"] <= m["top1_k5"] <= 1.0
    assert config["num_classes"] == 100 and config["teacher_encoder"] == "tiny"
    saved = json.loads((out / "classifier.json").read_text())
    assert saved["clustering_id"] == config["clustering_id"]


def test_saved_student_predicts_like_trained_one_and_resumes(student, cmu_run):
    out, config, options = student
    loaded = StudentClassifier.load(out)
    images = np.asarray(np.memmap(out / "patches_16.u8", np.uint8, "r").reshape(-1, 16, 16, 3)[:20])
    logits = loaded.logits(images)
    assert logits.shape == (20, 100) and np.isfinite(logits).all()
    again = distill(
        [cmu_run["root"] / "store"], cmu_run["root"] / "phenotypes", out,
        slides=[cmu_run["slide"]], progress=False, **options,
    )  # fmt: skip
    assert again["metrics"] == config["metrics"]  # resumed at the last epoch: nothing retrained


def test_distill_needs_the_embedded_slides(cmu_run, tmp_path, shared_data):
    other = shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
    with pytest.raises(InputError, match="1 slide\\(s\\) of the stores are not among"):
        distill([cmu_run["root"] / "store"], cmu_run["root"] / "phenotypes", tmp_path / "s",
                slides=[other], progress=False)  # fmt: skip
    assert not (tmp_path / "s").exists()  # refused before any work


def test_student_maps_match_teacher_layout(student, cmu_run, cmu_slide, tmp_path):
    out, _, _ = student
    written, skipped = maps_with_classifier(
        out, cmu_run["root"] / "phenotypes", [cmu_slide, tmp_path / "gone.svs"], tmp_path / "maps",
        stride=8, progress=False,
    )  # fmt: skip
    assert list(skipped) == [str(tmp_path / "gone.svs")]
    sid = cmu_run["slide_id"]
    assert list(written) == [sid] and written[sid][5].name == f"{sid}.png"
    student_map = np.asarray(Image.open(written[sid][5]))
    teacher_map = np.asarray(Image.open(cmu_run["maps"][sid][5]))
    assert student_map.shape == teacher_map.shape
    assert np.array_equal(student_map == 255, teacher_map == 255)
    side = json.loads(written[sid][5].with_suffix(".json").read_text())
    assert side["source"] == "classifier:vit_tiny_patch16_224@16"


def test_bad_classifier_inputs(student, cmu_run, tmp_path):
    out, config, _ = student
    with pytest.raises(InputError, match="no distilled classifier"):
        StudentClassifier.load(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps({**config, "num_classes": 7}))
    (tmp_path / "classifier.safetensors").write_bytes((out / "classifier.safetensors").read_bytes())
    with pytest.raises(InputError, match="does not match"):
        StudentClassifier.load(tmp_path)


def test_heldout_split_keeps_blocks_whole():
    rng = np.random.default_rng(0)
    coords = rng.integers(0, 64, (2000, 2))
    ids = np.asarray(["a", "b"] * 1000)
    val = heldout_mask(ids, coords, block=8, fraction=0.25)
    assert 0.1 < val.mean() < 0.4
    keys = [(i, r // 8, c // 8) for i, (r, c) in zip(ids, coords, strict=True)]
    by_block = {}
    for k, v in zip(keys, val, strict=True):
        by_block.setdefault(k, set()).add(bool(v))
    assert all(len(s) == 1 for s in by_block.values())
