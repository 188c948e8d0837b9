from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from htd_core.dataset import Dataset, DatasetWriter
from htd_core.errors import InputError
from htd_core.testing import PatchSamplerConformance
from htd_plugins.samplers.heterogeneous import HeterogeneousSampler

from .conftest import ANNOTATIONS, drawn_options, feature, window_rule_ok


class TestConformanceOnRealSlide(PatchSamplerConformance):
    min_samples = 4

    @pytest.fixture(autouse=True)
    def _options(self, tcga):
        self.options = tcga

    def make_sampler(self):
        return HeterogeneousSampler(**self.options, limit=4)


def test_exported_masks_satisfy_the_rule(tcga, tmp_path):
    """Real slide + hand-drawn GeoJSON: checked from the written mask PNGs, not the manifest."""
    sampler = HeterogeneousSampler(**tcga, limit=40)
    with DatasetWriter(tmp_path / "ds", sampler.class_map) as writer:
        for sample in sampler:
            writer.write(sample)
    data = Dataset(tmp_path / "ds")
    assert len(data) == 40
    pairs = set()
    for sample in data:
        assert window_rule_ok(sample.mask, 3), sample.meta
        assert sample.image.shape == (128, 128, 3) and sample.image.std() > 10  # real tissue
        comp = sample.composition()
        pairs.add(tuple(sorted(n for n, v in comp.items() if 0.2 <= v <= 0.8)[:2]))
    assert len(pairs) == 3  # tumour-stroma, tumour-inflammation, stroma-inflammation
    meta = data.rows[0]
    assert meta["slide_id"] and "TCGA" not in meta["slide_id"] and float(meta["mpp"]) == 2.0


def test_balance_across_class_pairs(tcga):
    sampler = HeterogeneousSampler(**tcga, max_overlap=1.0)
    plan = sampler.plan(0)
    groups = []
    k = len(sampler.class_map)
    for x, y in plan.xy[:15]:
        block = plan.cells[y // 8 : (y + 128) // 8, x // 8 : (x + 128) // 8]
        frac = np.bincount(block[block < k], minlength=k) / max((block < k).sum(), 1)
        groups.append(tuple(np.flatnonzero((frac >= 0.2) & (frac <= 0.8))[:2]))
    counts = {g: groups.count(g) for g in set(groups)}
    assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 1, counts


def test_accepted_set_is_the_rule_on_every_grid_window(drawn_slide):
    sampler = HeterogeneousSampler(
        **drawn_options(drawn_slide), max_overlap=1.0, balance=False, order="scan"
    )
    plan = sampler.plan(0)
    expected = set()
    for y in range(0, 768 - 128 + 1, 64):
        for x in range(0, 1024 - 128 + 1, 64):
            if window_rule_ok(plan.cells[y // 8 : (y + 128) // 8, x // 8 : (x + 128) // 8], 2):
                expected.add((x, y))
    assert {(int(x), int(y)) for x, y in plan.xy} == expected
    assert {x for x, _ in expected} == {448}  # straddling the tumour | stroma edge at x = 512
    assert plan.candidates == 15 * 11  # x 0..896, y 0..640 by 64


def test_homogeneous_mode(drawn_slide):
    sampler = HeterogeneousSampler(
        **drawn_options(drawn_slide), mode="homogeneous", homogeneous_frac=0.95
    )
    samples = list(sampler)
    assert samples
    for s in samples:
        frac = max(s.composition().values())
        assert frac >= 0.95 and (s.mask < 2).mean() >= 0.5


def test_random_positions_seeded_and_overlap_bounded(drawn_slide):
    opts = drawn_options(drawn_slide, positions="random", num_candidates=400, max_overlap=0.25)
    a = [(s.meta["x"], s.meta["y"]) for s in HeterogeneousSampler(**opts, seed=1)]
    b = [(s.meta["x"], s.meta["y"]) for s in HeterogeneousSampler(**opts, seed=1)]
    c = [(s.meta["x"], s.meta["y"]) for s in HeterogeneousSampler(**opts, seed=2)]
    assert a == b and a != c and len(a) >= 3
    for (x1, y1), (x2, y2) in itertools.combinations(a, 2):
        inter = max(0, 128 - abs(x1 - x2)) * max(0, 128 - abs(y1 - y2))
        assert inter / 128**2 <= 0.25


def test_resume_from_index_reads_the_same_samples(drawn_slide):
    sampler = HeterogeneousSampler(**drawn_options(drawn_slide), max_overlap=1.0)
    whole = [(s.meta["x"], s.meta["y"]) for s in sampler]
    assert [(s.meta["x"], s.meta["y"]) for s in sampler.iter_from(3)] == whole[3:]
    assert (
        len(HeterogeneousSampler(**drawn_options(drawn_slide), max_overlap=1.0, limit=2).take(10))
        == 2
    )


def test_xml_annotations_on_real_slide(tcga):
    opts = {
        **tcga,
        "classes": ["tumor", "stroma"],
        "annotations": str(ANNOTATIONS / "tcga_cr_7395_asap.xml"),
    }
    sampler = HeterogeneousSampler(**opts, label_map={"_0": "tumor", "_1": "tumor"}, limit=5)
    with pytest.warns(UserWarning, match="1 annotation.* without area"):  # the file's one Dot
        plan = sampler.plan(0)
    hole, nest = (int(1575 / 8), int(3125 / 8)), (int(1900 / 8), int(3200 / 8))
    assert plan.cells[hole] == 255 and plan.cells[nest] == 0  # the _2 exclusion is cut out
    samples = list(sampler)
    assert len(samples) >= 2 and all(window_rule_ok(s.mask, 2) for s in samples)
    filled = HeterogeneousSampler(**opts, label_map={"_0": "tumor", "_1": "tumor", "_2": "tumor"})
    with pytest.warns(UserWarning, match="without area"):
        assert filled.plan(0).cells[hole] == 0


def test_background_as_a_class_never_qualifies(drawn_slide):
    sampler = HeterogeneousSampler(**drawn_options(drawn_slide), background="class", tissue="otsu")
    assert sampler.class_map.names == ("tumor", "stroma", "background")
    for s in sampler:
        comp = s.composition()
        assert 0.2 <= comp["tumor"] <= 0.8 and 0.2 <= comp["stroma"] <= 0.8


def test_unannotated_tissue_as_a_class(drawn_slide, tmp_path):
    ann = tmp_path / "one.geojson"
    ann.write_text(
        json.dumps(
            {"type": "FeatureCollection", "features": [feature("tumor", 128, 128, 512, 640)]}
        )
    )
    opts = drawn_options(drawn_slide, annotations=str(ann), unannotated="stroma", tissue="otsu")
    plan = HeterogeneousSampler(**opts).plan(0)
    assert plan.cells[40, 80] == 1 and plan.cells[40, 30] == 0 and plan.cells[5, 5] == 255


def test_slide_table_and_per_slide_limits(drawn_slide, tmp_path):
    copy = tmp_path / "second.png"
    shutil.copy(drawn_slide["slide"], copy)
    table = tmp_path / "slides.csv"
    table.write_text(
        f"slide,annotations,slide_mpp\n{drawn_slide['slide']},{drawn_slide['annotations']},0.5\n"
        f"second.png,{drawn_slide['annotations']},0.5\n"
    )
    sampler = HeterogeneousSampler(
        slide=str(table), classes=["tumor", "stroma"], patch_size=128, limit_per_slide=2
    )
    ids = [s.meta["slide_id"] for s in sampler]
    assert len(ids) == 4 and len(set(ids)) == 2


# -- bad input ----------------------------------------------------------------------------


def test_patch_larger_than_slide(drawn_slide):
    with pytest.raises(InputError, match="patch_size=1024 is larger than slide"):
        HeterogeneousSampler(**drawn_options(drawn_slide, patch_size=1024, stride=512)).take(1)


def test_slide_without_tissue_warns_and_says_why_there_are_no_samples(drawn_slide):
    sampler = HeterogeneousSampler(
        **drawn_options(drawn_slide, slide=drawn_slide["blank"], annotations=None)
    )
    with (
        pytest.warns(UserWarning, match="no tissue found"),
        pytest.raises(InputError, match=r"0 samples: 49 windows .* 49 had less than min_labeled"),
    ):
        list(sampler)


def test_zero_samples_name_the_rule_that_rejected_them(drawn_slide):
    """Every window is labelled, none is heterogeneous enough: the rule is named."""
    sampler = HeterogeneousSampler(**drawn_options(drawn_slide), min_frac=0.45, max_frac=0.46)
    with pytest.raises(InputError, match=r"0 samples: \d+ windows.*were rejected by Compos"):
        list(sampler)


@pytest.mark.parametrize(
    "fix", [{"unknown_labels": "ignore"}, {"label_map": {"<unclassified>": "@hole"}}]
)
def test_unclassified_region_drawn_around_the_classes_keeps_them(drawn_slide, tmp_path, fix):
    """A QuPath export with an unclassified region drawn around the classified ones: both fixes
    the error suggests gave 0 samples (the region was painted over the classes)."""
    feats = json.loads(open(drawn_slide["annotations"]).read())["features"]
    around = feature("x", 100, 100, 920, 660)
    del around["properties"]["classification"]
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [around, *feats]}))
    with pytest.raises(InputError, match="<unclassified>"):
        HeterogeneousSampler(**drawn_options(drawn_slide, annotations=str(path))).take(1)
    sampler = HeterogeneousSampler(**drawn_options(drawn_slide, annotations=str(path)), **fix)
    plain = HeterogeneousSampler(**drawn_options(drawn_slide))
    assert len(sampler.plan(0).xy) == len(plain.plan(0).xy) > 0


def test_mpp_finer_than_base(drawn_slide):
    with pytest.raises(InputError, match="finer than slide"):
        HeterogeneousSampler(**drawn_options(drawn_slide), mpp=0.25).take(1)


def test_annotations_outside_the_slide(drawn_slide, tmp_path):
    ann = tmp_path / "far.geojson"
    ann.write_text(
        json.dumps(
            {"type": "FeatureCollection", "features": [feature("tumor", 2000, 100, 2400, 300)]}
        )
    )
    with pytest.raises(
        InputError, match=r"far.geojson: 1 annotation\(s\) lie outside .* 1024 x 768"
    ):
        HeterogeneousSampler(**drawn_options(drawn_slide, annotations=str(ann))).take(1)


def test_unknown_class_names_error_or_ignore(drawn_slide):
    opts = drawn_options(drawn_slide, classes=["tumor", "necrosis"])
    with pytest.raises(InputError, match=r"labels 'stroma' \(1\) that are not in the class list"):
        HeterogeneousSampler(**opts).take(1)
    plan = HeterogeneousSampler(**opts, unknown_labels="ignore").plan(0)
    assert set(np.unique(plan.cells)) == {0, 255}


def test_label_mask_with_wrong_aspect_ratio(drawn_slide, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "square.png")
    opts = drawn_options(drawn_slide, annotations=None, label_mask=str(tmp_path / "square.png"))
    with pytest.raises(InputError, match="square.png is 50 x 50 .* not a downsample of this slide"):
        HeterogeneousSampler(**opts).take(1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cell_px": 5}, "cell_px=5 must divide"),
        ({"positions": "spiral"}, "positions='spiral'"),
        ({"min_frac": 0.9}, "min_frac=0.9 > max_frac"),
        ({"classes": ["tumor"]}, "min_classes=2 but only 1"),
        ({"slide": ["a.svs", "b.svs"]}, "annotations is one file for 2 slides"),
        ({"unannotated": "fat"}, "unannotated='fat'"),
        ({"stride": 0}, "stride=0"),
    ],
)
def test_options_are_validated(drawn_slide, options, message):
    with pytest.raises(InputError, match=message):
        HeterogeneousSampler(**drawn_options(drawn_slide, **options))


def test_registered_with_option_checks(register_plugin):
    import htd_core
    import htd_plugins.samplers.heterogeneous as module
    from htd_core.errors import ComponentOptionError

    register_plugin(module)
    assert "heterogeneous" in htd_core.get_registry("patch_samplers").names()
    with pytest.raises(ComponentOptionError, match="Did you mean 'min_frac'"):
        htd_core.create("patch_samplers", "heterogeneous", slide="x", classes=["a"], min_fraq=0.1)
