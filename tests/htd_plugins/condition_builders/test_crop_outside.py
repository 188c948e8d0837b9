"""``placement="outside"``: each class's crop comes from the target's source image but outside
its window (else from another source, said in the provenance), so the target never contains
its own condition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.types import ClassMap, TissueSample
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.crops.bank import BankCrop, CropBank
from htd_plugins.condition_builders.crops.references import (
    crop_overlaps_window,
    draw_outside,
    overlaps,
    source_box,
    window_of,
)


def test_geometry_in_the_source_tile():
    meta = {"tile_id": "t1", "x": 64, "y": 0, "patch_size": 160, "slide_id": "s"}
    assert window_of(meta, (64, 64)) == ("t1", (64.0, 0.0, 160.0))
    # a 16 px square at (y=8, x=32) of the 64 px sample is 40 px at (144, 20) in the tile
    assert source_box(meta, (64, 64), (8, 32, 16)) == ("t1", [144.0, 20.0, 40.0])
    assert window_of({"slide_id": "s"}, (64, 64)) is None
    assert overlaps((0, 0, 10), (9, 9, 10)) and not overlaps((0, 0, 10), (10, 0, 10))


def test_overlap_of_a_placed_crop_with_the_target_window():
    target = {"tile_id": "t1", "x": 0, "y": 0, "patch_size": 160, "slide_id": "s"}
    inside = {"source": "bank", "slide_id": "s", "tile_id": "t1", "box": [100, 100, 30]}
    beside = {"source": "bank", "slide_id": "s", "tile_id": "t1", "box": [170, 0, 30]}
    other_tile = {"source": "bank", "slide_id": "s", "tile_id": "t2", "box": [0, 0, 30]}
    assert crop_overlaps_window(inside, target, (64, 64))
    assert not crop_overlaps_window(beside, target, (64, 64))
    assert not crop_overlaps_window(other_tile, target, (64, 64))
    assert crop_overlaps_window({"source": "sample"}, target, (64, 64))  # cut from itself
    no_geometry = {"slide_id": "s"}  # only the source is known: same source counts as overlap
    assert crop_overlaps_window({"source": "bank", "slide_id": "s"}, no_geometry, (64, 64))
    assert not crop_overlaps_window({"source": "bank", "slide_id": "o"}, no_geometry, (64, 64))


def _bank_crop(slide: str, tile: str, box: list[float]) -> BankCrop:
    return BankCrop(np.zeros((8, 8, 3), np.uint8), {"slide_id": slide, "tile_id": tile, "box": box})


def test_the_same_source_outside_the_window_else_another_source():
    target = {"tile_id": "t1", "x": 0, "y": 0, "patch_size": 160, "slide_id": "s"}
    crops = [_bank_crop("s", "t1", [10, 10, 20]), _bank_crop("s", "t1", [170, 10, 20]),
             _bank_crop("o", "u1", [0, 0, 20])]  # fmt: skip
    rng = np.random.default_rng(0)
    assert {draw_outside(crops, target, (64, 64), rng) for _ in range(20)} == {(1, None)}
    i, why = draw_outside(crops[:1] + crops[2:], target, (64, 64), rng)
    assert i == 1 and "every crop of this class from the source overlaps" in why
    i, why = draw_outside(crops[2:], {**target, "slide_id": "new"}, (64, 64), rng)
    assert i == 0 and "the source has no crop of this class" in why
    with pytest.raises(InputError, match="needs each sample's source id"):
        draw_outside(crops, {"tile_id": "t1", "x": 0, "y": 0}, (64, 64), rng)
    i, why = draw_outside(crops[:1], target, (64, 64), rng)  # nothing can serve it
    assert i is None and "overlaps the target window, and no other source has one" in why


def test_a_class_no_crop_can_serve_is_left_empty_and_says_why():
    """Mid-training, a class whose only crops overlap the target is empty, not an error."""
    from htd_core.types import CROP_PROVENANCE, ClassMap, TissueSample
    from htd_plugins.condition_builders import CropBank

    cm = ClassMap(("a", "b"))
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 1
    meta = {"slide_id": "s", "tile_id": "t1", "x": 0, "y": 0, "patch_size": 32}
    sample = TissueSample(np.full((32, 32, 3), 128, np.uint8), mask, cm, meta)
    bank = CropBank(
        {"a": [_bank_crop("s", "t1", [2, 2, 8])], "b": [_bank_crop("o", "u", [0, 0, 8])]}
    )
    cond = CropBuilder(placement="outside", bank=bank, classes=["a", "b"]).build(sample, seed=0)
    prov = cond.meta[CROP_PROVENANCE]
    assert "no other source has one" in prov["a"]["empty"]
    assert prov["b"]["source"] == "bank" and "another source" in prov["b"]["other_source"]


def test_outside_needs_a_bank():
    with pytest.raises(InputError, match="placement='outside' draws each crop from a bank"):
        CropBuilder(placement="outside")


@pytest.fixture(scope="module")
def glas_64(shared_data):
    """The experiment's GlaS training patches: 160 px heterogeneous windows resized to 64 px."""
    from htd_plugins.experiment.data import sample_splits

    data = {"sampler": "tiles", "options": {"root": str(Path(shared_data) / "glas"),
            "patch_size": 160, "stride": 64, "rule": "heterogeneous", "mpp": 0.9},
            "train": {"split": "train"}, "test": {"split": "test"}}  # fmt: skip
    return sample_splits(data, 64, 150, 8, 0).train


def placements(builder: CropBuilder, samples: list[TissueSample]) -> list[tuple[dict, dict]]:
    out = []
    for i, s in enumerate(samples):
        for prov in builder.build(s, seed=i).meta["crop_provenance"].values():
            if prov and "placed_size" in prov:
                out.append((prov, s.meta))
    return out


def test_no_crop_overlaps_its_target_window_on_glas_at_64_px(glas_64):
    """On 150 GlaS training patches at 64 px: with ``outside`` no crop holds pixels of its
    target's window and most come from the same source; ``elsewhere`` overlaps often (the
    shortcut this placement removes)."""
    bank = CropBank.from_samples(glas_64, size=96, per_sample=2, max_per_class=None,
                                 max_fraction=0.5, seed=0)  # fmt: skip
    outside = placements(CropBuilder(placement="outside", bank=bank, max_fraction=0.5), glas_64)
    assert len(outside) > 200
    assert not any(crop_overlaps_window(p, m, (64, 64)) for p, m in outside)
    same = np.mean([p["slide_id"] == m["slide_id"] for p, m in outside])
    assert same > 0.5, same  # an appearance reference from the same image, mostly
    assert all(("other_source" in p) == (p["slide_id"] != m["slide_id"]) for p, m in outside)
    assert max(p["placed_size"] for p, _ in outside) <= 32  # at most half the 64 px patch
    elsewhere = placements(CropBuilder(placement="elsewhere", max_fraction=0.5), glas_64)
    assert np.mean([crop_overlaps_window(p, m, (64, 64)) for p, m in elsewhere]) == 1.0
    # a class the bank has no crop of gets none (and says why), never one cut from itself
    lacking = CropBuilder(placement="outside", bank=CropBank({"gland": bank.crops("gland")}))
    sample = TissueSample(glas_64[0].image, glas_64[0].mask, ClassMap(("other", "gland")),
                          glas_64[0].meta)  # fmt: skip
    cond = lacking.build(sample, seed=0)
    assert cond.meta["crop_provenance"]["other"] == {"empty": "no crop of this class in the bank"}
    assert float(cond.select("valid:other").sum()) == 0.0
