from __future__ import annotations

import json

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.testing import real_tiles, synthetic_sample
from htd_core.types import CROP_PROVENANCE, ClassMap, TissueSample
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.crops.bank import BankCrop, CropBank


def with_provenance(cond):
    """(condition, its crops' provenance per class)."""
    return cond, cond.meta[CROP_PROVENANCE]


@pytest.fixture(scope="module")
def glas(shared_data):
    return real_tiles(shared_data, "glas", n=8)


@pytest.fixture(scope="module")
def bank(glas):
    return CropBank.from_samples(glas, size=96, min_size=16, per_sample=2)


def test_crops_are_real_and_inside_their_class(glas, bank):
    by_id = {s.meta["slide_id"]: s for s in glas}
    assert bank.classes == ("gland", "non_gland")
    assert all(1 <= c <= 16 for c in bank.counts().values())
    for name in bank.classes:
        k = glas[0].class_map.index(name)
        for crop in bank.crops(name):
            p = crop.provenance
            src = by_id[p["slide_id"]]
            y, x, d = p["y"], p["x"], p["size"]
            assert 16 <= d <= 96 and crop.image.shape == (d, d, 3)
            assert np.array_equal(crop.image, src.image[y : y + d, x : x + d])
            assert (src.mask[y : y + d, x : x + d] == k).mean() >= 0.9


def test_save_load_roundtrip_without_pickle(tmp_path, bank):
    path = bank.save(tmp_path / "bank")
    assert path.name == "bank.safetensors" and path.with_suffix(".json").is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files
    assert path.read_bytes()[8:9] == b"{"  # safetensors: length + JSON header, no pickle
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["counts"] == bank.counts()
    again = CropBank.load(path)
    assert again.classes == bank.classes and again.counts() == bank.counts()
    for name in bank.classes:
        for a, b in zip(bank.crops(name), again.crops(name), strict=True):
            assert np.array_equal(a.image, b.image) and a.provenance == b.provenance
    assert again.options["size"] == 96
    assert CropBank.load(tmp_path / "bank").classes == bank.classes  # suffix optional


def test_seeded_draw(bank):
    a = [bank.draw("gland", s).provenance for s in range(6)]
    b = [bank.draw("gland", s).provenance for s in range(6)]
    assert a == b
    assert len({json.dumps(p, sort_keys=True) for p in a}) > 1


def test_missing_class_lists_what_it_has(bank):
    with pytest.raises(
        InputError, match=r"no crops of class 'tumor'; it has: gland \(\d+\), non_gland"
    ):
        bank.draw("tumor")


def test_reservoir_caps_each_class():
    samples = [synthetic_sample(64, seed=s) for s in range(10)]
    small = CropBank.from_samples(samples, size=16, min_size=4, max_per_class=3, seed=1)
    assert set(small.counts().values()) == {3}
    again = CropBank.from_samples(samples, size=16, min_size=4, max_per_class=3, seed=1)
    assert all(
        np.array_equal(a.image, b.image)
        for n in small.classes
        for a, b in zip(small.crops(n), again.crops(n), strict=True)
    )


def test_bad_files_and_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        CropBank.load(tmp_path / "nope.safetensors")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.uint8)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not an htd crop bank"):
        CropBank.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="cannot read crop bank"):
        CropBank.load(tmp_path / "junk.safetensors")
    layout = synthetic_sample(32, with_image=False)
    with pytest.raises(InputError, match="layout without an image"):
        CropBank.from_samples([layout])
    with pytest.raises(InputError, match="min_inside"):
        CropBank.from_samples([], min_inside=1.5)
    with pytest.raises(InputError, match="uint8"):
        CropBank({"a": [BankCrop(np.zeros((4, 4), np.float32))]})


def test_builder_generates_from_layout_with_bank(tmp_path, glas, bank):
    path = bank.save(tmp_path / "bank.safetensors")
    layout = TissueSample(None, glas[3].mask, glas[3].class_map, {"slide_id": "user-layout"})
    builder = CropBuilder(bank=str(path), min_size=16)
    cond, prov = with_provenance(builder.build(layout, seed=2))
    assert {p["source"] for p in prov.values() if p and "source" in p} == {"bank"}
    for i, name in enumerate(layout.class_map.names):
        p = prov[name]
        if not p or "source" not in p:
            continue
        y, x, d = p["placed_y"], p["placed_x"], p["placed_size"]
        assert (layout.mask[y : y + d, x : x + d] == i).mean() >= 0.9
        assert cond.select(f"valid:{name}")[0, y : y + d, x : x + d].all()
        assert p["slide_id"] in {s.meta["slide_id"] for s in glas}  # provenance kept
    again = CropBuilder(bank=path, min_size=16).build(layout, seed=2)
    assert np.array_equal(cond.spatial.numpy(), again.spatial.numpy())
    with pytest.raises(InputError, match="no crops of class 'tumor'"):
        CropBuilder(bank=bank).build(
            TissueSample(None, np.zeros((32, 32), np.uint8), ClassMap(("tumor", "gland")))
        )


def test_bank_crops_follow_magnification():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    source = TissueSample(image, np.zeros((64, 64), np.uint8), ClassMap(("a",)), {"mpp": 0.5})
    bank = CropBank.from_samples([source], size=40)
    assert bank.crops("a")[0].image.shape[0] == 40
    layout = TissueSample(None, np.zeros((64, 64), np.uint8), ClassMap(("a",)), {"mpp": 1.0})
    _, prov = with_provenance(CropBuilder(fixed_size=60, bank=bank).build(layout))
    assert prov["a"]["placed_size"] == 20  # 40 px at 0.5 um/px are 20 px at 1.0 um/px
