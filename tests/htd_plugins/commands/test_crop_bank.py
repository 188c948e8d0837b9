"""``htd crop-bank``: a crop bank from the train split of a tile folder, with provenance; its
errors name command-line flags, and `htd generate` without a bank names this verb."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from htd_core.cli import main
from htd_core.images import opaque_id
from htd_plugins.condition_builders import CropBank

TRAIN = ("train_1_r0_c0", "train_1_r0_c1", "train_2_r0_c0")
TEST = ("testA_1_r0_c0", "testB_3_r0_c0")


@pytest.fixture
def glas(tmp_path):
    """A GlaS-like folder (the preset's official train_ / testA_ / testB_ split): 48 px tiles,
    a gland square on non-gland."""
    root = tmp_path / "glas"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 48), np.uint8)
    mask[8:40, 8:40] = 1
    for name in TRAIN + TEST:
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).save(
            root / "images" / f"{name}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def test_the_bank_holds_train_crops_only_with_their_provenance(
    glas, tmp_path, capsys, builtin_manager
):
    out = tmp_path / "new" / "folder" / "bank.safetensors"  # its folder is created
    argv = ["crop-bank", str(glas), "--out", str(out), "-o", "size=16", "-o", "min_size=8",
            "-o", "per_sample=2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"crop bank: {out}" in printed and "train split" in printed
    bank = CropBank.load(out)
    assert set(bank.classes) == {"gland", "non_gland"}
    header = json.loads(out.with_suffix(".json").read_text())
    train_ids = {opaque_id("train_1"), opaque_id("train_2")}
    test_ids = {opaque_id("testA_1"), opaque_id("testB_3")}
    crops = [c for name in bank.classes for c in bank.crops(name)]
    assert {c.provenance["slide_id"] for c in crops} <= train_ids
    assert all(c.provenance["size"] <= 16 for c in crops)
    data = header["options"]["data"]
    assert data["split"] == "train" and data["n_samples"] == len(TRAIN)
    assert set(data["source_ids"]) == train_ids and not test_ids & set(data["source_ids"])
    assert not any(name in out.with_suffix(".json").read_text() for name in TRAIN + TEST)
    assert header["options"]["size"] == 16 and header["options"]["per_sample"] == 2
    # rerun: htd replaces its own bank; --split all takes the test images too
    assert main([*argv, "--split", "all"]) == 0
    capsys.readouterr()
    data = json.loads(out.with_suffix(".json").read_text())["options"]["data"]
    assert (
        data["n_samples"] == len(TRAIN + TEST) and set(data["source_ids"]) == train_ids | test_ids
    )


def test_bad_input_is_one_line_naming_the_flag(glas, tmp_path, capsys, builtin_manager):
    user = tmp_path / "mine.safetensors"
    user.write_bytes(b"not a bank")
    cases = [
        (["--out", str(user)], f"--out {user} exists and is not a crop bank htd wrote"),
        (["--out", str(tmp_path / "b"), "-o", "sise=16"],
         "-o sise=...: the crop bank has no option 'sise'. Did you mean 'size'?"),
        (["--out", str(tmp_path / "b"), "--match", "nothing*"], "no tile matches match='nothing*' and split='train'"),
    ]  # fmt: skip
    for extra, needle in cases:
        assert main(["crop-bank", str(glas), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    for data, needle in ((tmp_path / "nowhere", "does not exist"), (user, "is a file")):
        assert main(["crop-bank", str(data), "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"DATA {data} {needle}: give a folder" in err[0], err
        assert "YAML" not in err[0]
    assert user.read_bytes() == b"not a bank"
    assert not (tmp_path / "b.safetensors").exists()


def test_a_missing_bank_names_the_verb_that_builds_one():
    from htd_core.errors import InputError

    with pytest.raises(InputError, match=r"htd crop-bank DATA --out nowhere\.safetensors"):
        CropBank.load("nowhere.safetensors")


def test_an_htd_dataset_keeps_its_recorded_split(glas, tmp_path, capsys, builtin_manager):
    """``htd sample`` of the train split records ``split=train`` per patch: the bank takes all
    of them (no second random split of training data), never a recorded test patch."""
    data = tmp_path / "train"
    assert main(["sample", "tiles", "--out", str(data), "-o", f"root={glas}",
                 "-o", "classes=[non_gland, gland]", "-o", "split=train",
                 "-o", "patch_size=48", "-o", "stride=48"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "bank.safetensors"
    assert main(["crop-bank", str(data), "--out", str(out), "-o", "size=16", "-o", "min_size=8",
                 "--no-progress"]) == 0  # fmt: skip
    header = json.loads(out.with_suffix(".json").read_text())
    assert header["options"]["data"]["n_samples"] == len(TRAIN)
    assert set(header["options"]["data"]["source_ids"]) == {
        opaque_id("train_1"),
        opaque_id("train_2"),
    }
