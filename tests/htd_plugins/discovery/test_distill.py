"""Distilled ViT-small: held-out agreement with the teacher, exact save/load and resume,
a held-out split that shares no pixels with training, student maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from htd_core.errors import InputError
from htd_plugins.discovery.classifier import (
    CHECKPOINT,
    StudentClassifier,
    save_student,
    train_student,
)
from htd_plugins.discovery.distill import distill, maps_with_classifier
from htd_plugins.discovery.holdout import split_patches

TINY = dict(arch="vit_tiny_patch16_224", depth=1, input_size=16)


@pytest.fixture(scope="module")
def student(cmu_run):
    out = cmu_run["root"] / "student"
    options = dict(epochs=6, batch_size=32, lr=2e-3, block=4, **TINY)
    config = distill(
        [cmu_run["root"] / "store"], cmu_run["root"] / "phenotypes", out,
        slides=[cmu_run["slide"]], progress=False, **options,
    )  # fmt: skip
    return out, config, options


def test_student_agrees_with_teacher_above_majority_on_heldout(student):
    """Held-out patches (never trained on, no pixel shared with training) get the teacher's
    k=5 phenotype more often than always answering the most common one would."""
    _, config, _ = student
    m = config["metrics"]
    assert config["n_val"] > 20 and config["split"]["holdout"] == "blocks"
    assert config["split"]["margin_cells"] == {next(iter(config["split"]["margin_cells"])): 1}
    print({k: round(v, 3) for k, v in m.items()})
    assert m["top1_k5"] > m["majority_baseline_k5"] + 0.05, m


def test_heldout_patches_share_no_pixels_with_training(cmu_run):
    entry = cmu_run["store"].entry(cmu_run["slide_id"])
    coords, grid = entry.coords(), entry.meta["grid"]  # 16 px patches every 8 px
    ids = np.full(len(coords), entry.slide_id)
    split = split_patches(ids, coords, {entry.slide_id: grid}, block=4, fraction=0.25)
    val, train = coords[split.val], coords[split.train]
    gap = np.abs(val[:, None, :] - train[None, :, :]).max(axis=2).min()
    assert gap * grid["stride"] >= grid["patch_size"]  # centres a whole patch apart
    assert split.info["margin_patches"] > 0
    # without the margin, neighbouring cells of two sides would overlap (the test can fail)
    plain = ~split.val
    assert np.abs(val[:, None, :] - coords[plain][None, :, :]).max(axis=2).min() == 1


def test_whole_slides_are_held_out_when_there_are_several():
    rng = np.random.default_rng(0)
    ids = np.repeat([f"slide{i}" for i in range(8)], 50)
    coords = rng.integers(0, 40, (400, 2))
    grids = {f"slide{i}": {"patch_size": 64, "stride": 16} for i in range(8)}
    split = split_patches(ids, coords, grids, fraction=0.3)
    assert split.info["holdout"] == "slides" and split.info["val_slides"]
    for sid in set(ids):
        assert len(set(split.val[ids == sid].tolist())) == 1  # a slide is on one side
    assert not (split.val & split.train).any() and (split.val | split.train).all()
    blocks = split_patches(ids, coords, grids, fraction=0.3, holdout="blocks")
    assert blocks.info["holdout"] == "blocks" and blocks.info["margin_cells"]["slide0"] == 3


def colour_patches(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """16 px patches of three noisy colours (label = colour)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    base = np.array([[200, 80, 150], [120, 60, 160], [230, 200, 210]])[labels]
    images = np.clip(base[:, None, None, :] + rng.normal(0, 20, (n, 16, 16, 3)), 0, 255)
    return images.astype(np.uint8), labels


class Killed(Exception):
    pass


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    images, labels = colour_patches()
    train = np.ones(len(labels), bool)
    run = dict(num_classes=3, epochs=3, batch_size=16, lr=1e-3, seed=0, progress=False, **TINY)
    whole, _ = train_student(images, labels, train, tmp_path / "a", **run)

    def kill_after_first(epoch, model):
        if epoch == 1:
            raise Killed

    (tmp_path / "b").mkdir()
    with pytest.raises(Killed):
        train_student(images, labels, train, tmp_path / "b", callbacks=[kill_after_first], **run)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [CHECKPOINT]  # one file
    assert torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)["epoch"] == 1
    resumed, info = train_student(images, labels, train, tmp_path / "b", **run)
    assert [h["epoch"] for h in info["history"]] == [1, 2, 3]
    a, b = whole.state_dict(), resumed.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # a different seed trains other weights: the comparison can fail
    other, _ = train_student(images, labels, train, tmp_path / "c", **{**run, "seed": 1})
    assert any(not torch.allclose(a[k], v) for k, v in other.state_dict().items())


def test_loaded_model_equals_trained_model(tmp_path):
    images, labels = colour_patches()
    model, _ = train_student(images, labels, np.ones(len(labels), bool), tmp_path, num_classes=3,
                             epochs=1, batch_size=32, progress=False, **TINY)  # fmt: skip
    save_student(tmp_path, model, {"num_classes": 3, **TINY})
    loaded = StudentClassifier.load(tmp_path)
    trained, again = model.state_dict(), loaded.model.state_dict()
    assert trained.keys() == again.keys()
    assert all(torch.equal(trained[k], again[k]) for k in trained)
    expected = StudentClassifier(model, {"input_size": 16, "num_classes": 3}).logits(images)
    np.testing.assert_array_equal(loaded.logits(images), expected)


def test_distill_needs_the_embedded_slides(cmu_run, tmp_path, shared_data):
    other = shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
    with pytest.raises(InputError, match="1 slide\\(s\\) of the stores are not among"):
        distill([cmu_run["root"] / "store"], cmu_run["root"] / "phenotypes", tmp_path / "s",
                slides=[other], progress=False)  # fmt: skip
    assert not (tmp_path / "s").exists()  # refused before any work


def test_student_maps_agree_with_teacher_above_chance_on_heldout_cells(
    student, cmu_run, cmu_slide, tmp_path
):
    out, config, _ = student
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
    entry = cmu_run["store"].entry(sid)
    coords = entry.coords()
    split = split_patches(np.full(len(coords), sid), coords, {sid: entry.meta["grid"]},
                          block=config["block"], fraction=config["val_fraction"])  # fmt: skip
    r, c = coords[split.val].T
    s, t = student_map[r, c].astype(int), teacher_map[r, c].astype(int)
    assert (s < 5).all() and (t < 5).all()
    agreement = float((s == t).mean())
    # chance: two independent labellers with these marginals agree sum_i p_i q_i of the time
    chance = float((np.bincount(s, minlength=5) * np.bincount(t, minlength=5)).sum() / len(s) ** 2)
    print(f"student/teacher agreement {agreement:.3f}, chance {chance:.3f}")
    assert agreement > chance + 0.1, (agreement, chance)
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


def test_heldout_blocks_are_whole():
    rng = np.random.default_rng(0)
    coords = rng.integers(0, 64, (2000, 2))
    ids = np.asarray(["a", "b"] * 1000)
    grids = {"a": {"patch_size": 8, "stride": 8}, "b": {"patch_size": 8, "stride": 8}}
    split = split_patches(ids, coords, grids, block=8, fraction=0.25)
    assert 0.1 < split.val.mean() < 0.4 and split.info["margin_cells"] == {"a": 0, "b": 0}
    assert (split.val | split.train).all()  # no overlap between patches: no margin needed
    keys = [(i, r // 8, c // 8) for i, (r, c) in zip(ids, coords, strict=True)]
    by_block = {}
    for k, v in zip(keys, split.val, strict=True):
        by_block.setdefault(k, set()).add(bool(v))
    assert all(len(s) == 1 for s in by_block.values())
    with pytest.raises(InputError, match="holdout"):
        split_patches(ids, coords, grids, holdout="random")
