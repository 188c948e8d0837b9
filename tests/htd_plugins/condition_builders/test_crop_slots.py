"""crop_slots: a dual condition whose size does not grow with the number of classes."""

from __future__ import annotations

import numpy as np
import pytest

import htd_core
from htd_core.errors import InputError
from htd_core.testing import ConditionBuilderConformance, synthetic_sample
from htd_core.types import CROP_PROVENANCE, ClassMap, TissueSample
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.crop_slots import SLOTS, CropSlotsBuilder
from htd_plugins.condition_builders.crops.bank import CropBank


class TestCropSlotsConformance(ConditionBuilderConformance):
    needs_image = True  # no bank: crops come from the sample's image

    def make_builder(self):
        return CropSlotsBuilder(slots=3, crop_options={"d_base": 24, "min_size": 4})


class TestCropSlotsWithBankConformance(ConditionBuilderConformance):
    bank = CropBank.from_samples(
        [synthetic_sample(64, seed=s) for s in range(4)], size=16, min_size=4
    )

    def make_builder(self):
        return CropSlotsBuilder(slots=3, bank=self.bank, crop_options={"min_size": 4})


def striped(k: int, present: dict[int, int], size: int = 64, seed: int = 0) -> TissueSample:
    """A K-class sample whose mask holds the classes of ``present`` as vertical stripes of the
    given widths (left to right in the dict's order); the rest of the columns are ignored."""
    mask = np.full((size, size), 255, np.uint8)
    x = 0
    for cls, width in present.items():
        mask[:, x : x + width] = cls
        x += width
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    names = tuple(f"phenotype_{i:02d}" for i in range(k))
    return TissueSample(image, mask, ClassMap(names), {"slide_id": "s"})


def test_channel_count_does_not_grow_with_k():
    builder = CropSlotsBuilder(slots=4)
    small, large = striped(5, {1: 40, 3: 24}), striped(100, {17: 40, 93: 24})
    five, hundred = builder.channels(small.class_map), builder.channels(large.class_map)
    assert len(five) == len(hundred) == 1 + 5 * 4
    assert five[0] == "class_index:5" and hundred[0] == "class_index:100"
    assert five[1:] == hundred[1:]
    assert builder.build(large, seed=0).spatial.shape == (21, 64, 64)
    # the one-hot form grows with K: 5 K channels
    dual = htd_core.create("condition_builders", "semantic_map") + CropBuilder()
    assert len(dual.channels(large.class_map)) == 500


def test_slot_content_per_class():
    """Largest class first; mask, crop and validity in its slot; identity in the index map;
    unused slots all zero and named None; classes beyond S keep their identity only."""
    sample = striped(100, {42: 8, 7: 30, 93: 20, 60: 4}, seed=1)  # 2 columns ignored
    builder = CropSlotsBuilder(slots=5, crop_options={"d_base": 12, "min_size": 4})
    cond = builder.build(sample, seed=3)
    x = cond.spatial.numpy()
    assert cond.meta[SLOTS] == ["phenotype_07", "phenotype_93", "phenotype_42", "phenotype_60",
                                None]  # fmt: skip
    index = x[0]
    assert set(np.unique(index).tolist()) == {0.0, 8.0, 43.0, 61.0, 94.0}
    np.testing.assert_array_equal(index, np.where(sample.mask < 100, sample.mask + 1.0, 0.0))
    crop_of = CropBuilder(d_base=12, min_size=4).select(sample, 3)  # the crop builder's choices
    for s, cls in enumerate([7, 93, 42, 60]):
        mask, rgb, valid = x[1 + 5 * s], x[2 + 5 * s : 5 + 5 * s], x[5 + 5 * s]
        np.testing.assert_array_equal(mask, sample.mask == cls)
        assert (valid * mask).sum() >= 0.9 * valid.sum() > 0, "a crop lies in its region"
        assert not rgb[:, valid == 0].any()
        c = crop_of[cls]
        window = rgb[:, c.y : c.y + c.image.shape[0], c.x : c.x + c.image.shape[1]]
        np.testing.assert_allclose(window, c.image.transpose(2, 0, 1) / 127.5 - 1.0, atol=1e-6)
    assert not x[21:].any(), "the empty fifth slot is all zero"
    prov = cond.meta[CROP_PROVENANCE]
    assert prov["phenotype_07"]["source"] == "sample" and prov["phenotype_00"] is None

    capped = CropSlotsBuilder(slots=2, crop_options={"d_base": 12, "min_size": 4})
    c2 = capped.build(sample, seed=3)
    assert c2.meta[SLOTS] == ["phenotype_07", "phenotype_93"]
    np.testing.assert_array_equal(c2.spatial[0].numpy(), index)  # 42 and 60 keep their identity
    assert c2.meta[CROP_PROVENANCE]["phenotype_42"] is None  # no slot: no crop drawn
    np.testing.assert_array_equal(c2.spatial[1:].numpy(), x[1:11])  # same slots, same crops


def test_coarsened_map_uses_the_representatives():
    """Under the curriculum a mask is re-expressed in the k_max class list: merged classes
    become one slot, with one crop from the merged region."""
    fine = striped(100, {10: 20, 11: 20, 50: 24}, seed=2)
    coarse_mask = np.where(fine.mask == 11, 10, fine.mask).astype(np.uint8)
    coarse = TissueSample(fine.image, coarse_mask, fine.class_map, fine.meta)
    cond = CropSlotsBuilder(slots=3, crop_options={"d_base": 12, "min_size": 4}).build(coarse)
    assert cond.meta[SLOTS] == ["phenotype_10", "phenotype_50", None]
    np.testing.assert_array_equal(cond.spatial[1].numpy(), coarse_mask == 10)


def test_layout_draws_from_the_bank_and_placement_options_pass_through():
    sample = striped(5, {0: 32, 4: 32})
    bank = CropBank.from_samples([sample], size=16, min_size=4)
    layout = TissueSample(None, sample.mask, sample.class_map, {})
    cond = CropSlotsBuilder(slots=2, bank=bank, crop_options={"min_size": 4}).build(layout)
    assert {cond.meta[CROP_PROVENANCE][n]["source"] for n in cond.meta[SLOTS]} == {"bank"}
    same = CropSlotsBuilder(slots=2, crop_options={"placement": "same", "d_base": 12})
    prov = same.build(sample, seed=0).meta[CROP_PROVENANCE]["phenotype_00"]
    assert (prov["placed_x"], prov["placed_y"]) == (prov["x"], prov["y"])


@pytest.mark.parametrize(
    ("options", "named"),
    [({"slots": 0}, "slots"), ({"crop_options": {"seed": 1}}, "seed"),
     ({"crop_options": {"placement": "nowhere"}}, "placement")],
)  # fmt: skip
def test_bad_options_are_named(options, named):
    with pytest.raises(InputError, match=named):
        CropSlotsBuilder(**options)


def test_registered_by_name():
    builder = htd_core.create("condition_builders", "crop_slots", slots=2)
    assert isinstance(builder, CropSlotsBuilder) and builder.slots == 2


def test_tcga_example_builds_the_k100_condition(builtin_manager):
    """examples/tcga_crop_slots.yaml (its sampler needs the discovery outputs) composes: 21
    condition channels at k = 100 and a backbone embedding the class index."""
    from pathlib import Path

    import yaml

    from htd_core import Pipeline

    path = Path(__file__).resolve().parents[3] / "examples" / "tcga_crop_slots.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["sampler"]["name"] == "curriculum"
    pipe = Pipeline.from_config({k: v for k, v in config.items() if k != "sampler"})
    hundred = ClassMap(tuple(f"phenotype_{i:02d}" for i in range(100)))
    assert len(pipe.condition_builder.channels(hundred)) == 21
    assert pipe.backbone.config.class_embedding_dim == 16
