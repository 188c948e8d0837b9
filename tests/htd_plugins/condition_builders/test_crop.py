from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import htd_core
from htd_core.dataset import Dataset, DatasetWriter
from htd_core.errors import HtdError, InputError
from htd_core.testing import ConditionBuilderConformance, real_tiles, synthetic_sample
from htd_core.types import CROP_PROVENANCE as PROVENANCE_KEY
from htd_core.types import ClassMap, TissueSample
from htd_plugins.condition_builders import crop as crop_module
from htd_plugins.condition_builders import semantic_map
from htd_plugins.condition_builders.crop import CropBuilder
from htd_plugins.condition_builders.crops.bank import CropBank

CLASSES = ("tumor", "stroma", "normal")


def with_provenance(cond):
    """(condition, its crops' provenance per class)."""
    return cond, cond.meta[PROVENANCE_KEY]


class TestCropConformance(ConditionBuilderConformance):
    """Without a bank the builder needs the sample's image."""

    needs_image = True

    def make_builder(self):
        return CropBuilder(d_base=24, min_size=4)


class TestCropWithBankConformance(ConditionBuilderConformance):
    """With a bank, layouts (no image) are conditioned with real crops from the bank."""

    bank = CropBank.from_samples(
        [synthetic_sample(64, seed=s) for s in range(4)], size=16, min_size=4
    )

    def make_builder(self):
        return CropBuilder(d_base=24, min_size=4, bank=self.bank)


def _check_condition(sample: TissueSample, cond, builder: CropBuilder, prov) -> int:
    """Validity invariants (checked in numpy: fast on busy machines); returns crops placed."""
    k = len(sample.class_map)
    crops = cond.select("crop:").numpy().reshape(k, 3, *sample.size)
    valid = cond.select("valid:").numpy()
    assert set(np.unique(valid).tolist()) <= {0.0, 1.0}
    assert crops.min() >= -1 and crops.max() <= 1
    present = np.bincount(sample.mask[sample.mask < k].ravel(), minlength=k)[:k] > 0
    placed = 0
    for i, name in enumerate(sample.class_map.names):
        v = valid[i].astype(bool)
        assert not crops[i][:, ~v].any(), "pixels outside the crop must be empty"
        if not v.any():
            assert prov[name] is None or "empty" in prov[name]
            assert present[i] == (prov[name] is not None)
            continue
        placed += 1
        ys, xs = np.nonzero(v)
        y0, x0, d = int(ys.min()), int(xs.min()), int(ys.max() - ys.min() + 1)
        assert xs.max() - x0 + 1 == d and v.sum() == d * d, "validity must be one square"
        p = prov[name]
        assert (p["placed_y"], p["placed_x"], p["placed_size"]) == (y0, x0, d)
        region = sample.mask[y0 : y0 + d, x0 : x0 + d]
        assert (region == i).mean() >= builder.min_inside, "crop must sit inside its class"
        if p["source"] == "sample":
            src = sample.image[p["y"] : p["y"] + d, p["x"] : p["x"] + d]
            expected = src.transpose(2, 0, 1).astype(np.float32) * (2 / 255) - 1
            np.testing.assert_allclose(crops[i][:, y0 : y0 + d, x0 : x0 + d], expected, atol=1e-6)
            assert (sample.mask[p["y"] : p["y"] + d, p["x"] : p["x"] + d] == i).mean() >= 0.9
    return placed


@pytest.mark.parametrize("dataset", ["wsss4luad_val", "glas", "camelyon_mini"])
@pytest.mark.parametrize("placement", ["same", "elsewhere"])
def test_validity_on_real_masks(shared_data, dataset, placement):
    samples = real_tiles(shared_data, dataset, n=4, size=224)
    builder = CropBuilder(placement=placement)
    placed = 0
    for n, sample in enumerate(samples):
        cond, prov = with_provenance(builder.build(sample, seed=n))
        placed += _check_condition(sample, cond, builder, prov)
        if placement == "same":
            assert all(p["x"] == p["placed_x"] for p in prov.values() if p and "x" in p)
    assert placed >= len(samples), "real masks should give at least one crop per sample"


def test_elsewhere_moves_crops_on_real_masks(shared_data):
    samples = real_tiles(shared_data, "camelyon_mini", n=4, size=256)
    builder = CropBuilder(d_base=50, alpha=0, placement="elsewhere")
    moved = 0
    for s in samples:
        for p in with_provenance(builder.build(s, seed=1))[1].values():
            if p and "x" in p:
                moved += (p["x"], p["y"]) != (p["placed_x"], p["placed_y"])
    assert moved >= 3


def test_default_placement_moves_a_training_crop_off_its_cut():
    """The default is ``elsewhere``: the sample's pixels are not handed back where they were
    cut (``same``, the copy shortcut, does exactly that)."""
    mask = np.zeros((48, 48), np.uint8)
    mask[:, 16:] = 1  # class b: 48 x 32, room for a 12 px crop at many positions
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    sample = TissueSample(image, mask, ClassMap(("a", "b")))
    scaled = image.transpose(2, 0, 1).astype(np.float32) * (2 / 255) - 1
    assert CropBuilder().placement == "elsewhere"
    for seed in range(4):
        for placement in (None, "same"):  # None: the default
            chosen = {"placement": placement} if placement else {}
            builder = CropBuilder(fixed_size=12, min_size=4, **chosen)
            cond, prov = with_provenance(builder.build(sample, seed=seed))
            p, crop = prov["b"], cond.select("crop:b:").numpy()
            cut = (slice(None), slice(p["y"], p["y"] + 12), slice(p["x"], p["x"] + 12))
            placed = (slice(None), slice(p["placed_y"], p["placed_y"] + 12),
                      slice(p["placed_x"], p["placed_x"] + 12))  # fmt: skip
            np.testing.assert_allclose(crop[placed], scaled[cut], atol=1e-6)  # a real crop
            at_cut = np.allclose(crop[cut], scaled[cut], atol=1e-6)
            moved = (p["y"], p["x"]) != (p["placed_y"], p["placed_x"])
            assert (moved, at_cut) == ((False, True) if placement == "same" else (True, False))


def test_empty_pixel_is_not_mid_grey():
    mask = np.zeros((40, 40), np.uint8)
    image = np.full((40, 40, 3), 127, np.uint8)  # mid-grey tissue scales to about 0
    cond = CropBuilder(fixed_size=20, d_range=(1, 200)).build(
        TissueSample(image, mask, ClassMap(("a", "b"))), seed=0
    )
    crop, valid = cond.select("crop:a:"), cond.select("valid:a")[0]
    assert crop.abs().max() < 0.01 and valid.sum() == 400  # grey crop: ~0 but valid
    assert cond.select("valid:b").sum() == 0


def test_same_seed_same_tensor_other_seed_other_crop(shared_data):
    sample = real_tiles(shared_data, "glas", n=1, size=224)[0]
    builder = CropBuilder(placement="elsewhere")
    a, b = builder.build(sample, seed=3), CropBuilder(placement="elsewhere").build(sample, seed=3)
    assert torch.equal(a.spatial, b.spatial)
    others = [builder.build(sample, seed=s).spatial for s in range(4, 8)]
    assert any(not torch.equal(a.spatial, o) for o in others)
    assert torch.equal(builder.build(sample).spatial, builder.build(sample, seed=0).spatial)


def test_adaptive_size_and_mpp_scaling():
    mask = np.zeros((256, 256), np.uint8)
    mask[:, 128:] = 1  # class b: a clean half, complexity 0
    mask[::8, :64] = 2  # class a frayed by thin lines of class c: complex
    sample = TissueSample(None, mask, ClassMap(("a", "b", "c")))
    sizes = CropBuilder(d_base=60, alpha=1.0).sizes(sample)
    assert sizes[0] > sizes[1] == 60  # the complex region gets the larger crop
    assert (CropBuilder(d_base=60, alpha=0).sizes(sample) == 60).all()
    assert (CropBuilder(fixed_size=70).sizes(sample) == 70).all()
    assert (CropBuilder(d_base=300).sizes(sample) == 200).all()  # clipped to d_range
    hi_res = TissueSample(None, mask, sample.class_map, {"mpp": 0.25})
    assert (CropBuilder(fixed_size=50).sizes(hi_res) == 100).all()
    lo_res = TissueSample(None, mask, sample.class_map, {"mpp": "1.0"})  # csv strings too
    assert (CropBuilder(fixed_size=50).sizes(lo_res) == 25).all()


def test_small_region_shrinks_or_stays_empty():
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, :] = 1  # a 10 px band cannot hold the 40 px crop
    sample = TissueSample(np.zeros((64, 64, 3), np.uint8), mask, ClassMap(("a", "b")))
    shrunk, prov = with_provenance(CropBuilder(fixed_size=40, min_size=4).build(sample, seed=0))
    assert prov["b"]["placed_size"] == 11  # the largest square >= 90% b: 110 of 121 pixels
    assert shrunk.select("valid:b").sum() == 121
    empty, prov = with_provenance(CropBuilder(fixed_size=40, on_small="empty").build(sample))
    assert empty.select("valid:b").sum() == 0 and prov["b"] == {"empty": "region too small"}
    floor, _ = with_provenance(CropBuilder(fixed_size=40, min_size=16).build(sample))
    assert floor.select("valid:b").sum() == 0  # the largest fit (11) is below the floor


def test_explicit_crops_for_a_layout(tmp_path):
    from PIL import Image

    layout = synthetic_sample(64, CLASSES, seed=1, with_image=False)
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "stroma.png")
    crops = {n: red for n in CLASSES} | {"stroma": tmp_path / "stroma.png"}
    builder = CropBuilder(fixed_size=16, min_size=4, crops=crops)
    cond, prov = with_provenance(builder.build(layout, seed=0))
    placed = [n for n in CLASSES if prov[n] and "source" in prov[n]]
    assert placed
    for name in placed:
        assert prov[name]["source"] == "explicit"
        v = cond.select(f"valid:{name}")[0].bool()
        assert torch.all(cond.select(f"crop:{name}:r")[0][v] == 1.0)
        assert torch.all(cond.select(f"crop:{name}:g")[0][v] == -1.0)


def test_bad_input():
    sample = synthetic_sample(32, CLASSES)
    bad_mask = sample.mask.copy()
    bad_mask[3, 3] = 7  # a class the class list does not have
    with pytest.raises(InputError, match="class indices \\[7\\]"):
        CropBuilder().build(TissueSample(sample.image, bad_mask, sample.class_map))
    with pytest.raises(InputError, match="configured for 2 classes"):
        CropBuilder(classes=["tumor", "stroma"]).build(sample)
    with pytest.raises(InputError, match="configured for 2 classes"):
        CropBuilder(classes=["tumor", "stroma"]).channels(sample.class_map)
    layout = TissueSample(None, sample.mask, sample.class_map, {"slide_id": "s1"})
    with pytest.raises(InputError, match="bank="):
        CropBuilder().build(layout)
    with pytest.raises(InputError, match="not classes of the sample"):
        CropBuilder(crops={"fat": np.zeros((8, 8, 3), np.uint8)}).build(sample)
    with pytest.raises(InputError, match="uint8"):
        CropBuilder(crops={"tumor": np.zeros((8, 8), np.float32)})
    for options, field in [
        ({"placement": "nearby"}, "placement"), ({"on_small": "fail"}, "on_small"),
        ({"min_inside": 0}, "min_inside"), ({"d_range": (200, 50)}, "d_range"),
        ({"d_base": -1}, "d_base"), ({"alpha": -0.5}, "alpha"), ({"fixed_size": 0}, "fixed_size"),
        ({"seed": -1}, "seed"), ({"bank": 3}, "bank"),
    ]:  # fmt: skip
        with pytest.raises(InputError, match=field):
            CropBuilder(**options)
    with pytest.raises(InputError, match="seed"):
        CropBuilder().build(sample, seed=-2)


def test_registered_composes_and_records_provenance(register_plugin, tmp_path):
    register_plugin(crop_module, "crop")
    register_plugin(semantic_map, "semantic_map")
    dual = htd_core.create("condition_builders", "semantic_map") + htd_core.create(
        "condition_builders", "crop", d_base=24, min_size=4
    )
    sample = synthetic_sample(64, CLASSES)
    cond = dual.build(sample, seed=0)
    k = len(CLASSES)
    assert cond.num_channels == 5 * k
    assert cond.channels[:k] == tuple(f"map:{n}" for n in CLASSES)
    assert cond.channels[k : k + 3] == ("crop:tumor:r", "crop:tumor:g", "crop:tumor:b")
    assert cond.channels[4 * k :] == tuple(f"valid:{n}" for n in CLASSES)
    prov = cond.meta[PROVENANCE_KEY]  # merged through semantic_map + crop
    assert set(prov) == set(CLASSES) and prov["tumor"]["slide_id"] == "synthetic-0"
    with pytest.raises(HtdError, match="placement"):
        htd_core.create("condition_builders", "crop", placement="x")
    # the generator records provenance in the manifest through the dataset writer
    generated = TissueSample(sample.image, sample.mask, sample.class_map, {PROVENANCE_KEY: prov})
    with DatasetWriter(tmp_path / "ds", sample.class_map, extra_columns=(PROVENANCE_KEY,)) as w:
        w.write(generated)
    row = Dataset(tmp_path / "ds").rows[0]
    assert json.loads(row[PROVENANCE_KEY])["tumor"]["x"] == prov["tumor"]["x"]


def test_all_four_builtin_builders_are_listed(builtin_manager):
    names = builtin_manager.condition_builders.names()
    assert {"crop", "embedding", "semantic_map", "unconditional"} <= set(names)
