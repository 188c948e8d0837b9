from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_core.splits import source_id
from htd_core.testing import PatchSamplerConformance
from htd_plugins.samplers.tiles import TilesSampler

from .conftest import window_rule_ok


class TestConformanceOnGlas(PatchSamplerConformance):
    min_samples = 4

    @pytest.fixture(autouse=True)
    def _root(self, shared_data):
        self.root = shared_data / "glas"

    def make_sampler(self):
        return TilesSampler(root=self.root, limit=4)


def test_glas_whole_tiles(shared_data):
    samples = TilesSampler(root=shared_data / "glas", limit=8).take(8)
    assert [s.image.shape for s in samples] == [(224, 224, 3)] * 8
    assert all(set(np.unique(s.mask)) <= {0, 1} for s in samples)
    # tiles of one source image share their (opaque) id: split by source, never by tile
    assert (
        len({s.meta["slide_id"] for s in samples[:4]}) == 1
        and samples[0].meta["slide_id"] != samples[4].meta["slide_id"]
    )
    names = sorted(p.name for p in (shared_data / "glas" / "images").iterdir())[:8]
    assert samples[0].meta["slide_id"] == opaque_id(source_id(names[0])) != opaque_id(names[0])
    assert [s.meta["tile_id"] for s in samples] == [opaque_id(n) for n in names]
    assert all(n.split(".")[0] not in str(s.meta) for n, s in zip(names, samples, strict=True))


def test_camelyon_lossy_masks_are_thresholded_and_cut(shared_data):
    sampler = TilesSampler(
        root=shared_data / "camelyon_mini",
        patch_size=256,
        stride=128,
        rule="heterogeneous",
        limit=12,
    )
    samples = list(sampler)
    assert len(samples) == 12
    for s in samples:
        assert s.image.shape == (256, 256, 3) and set(np.unique(s.mask)) <= {0, 1}
        assert window_rule_ok(s.mask, 2)
        assert s.meta["x"] % 128 == 0 and s.meta["y"] % 128 == 0


def test_wsss4luad_palette_masks_and_ignored_code(shared_data):
    classes = {0: "tumor_epithelium", 1: "tumor_stroma", 2: "normal_lung", 3: "@ignore"}
    sampler = TilesSampler(
        root=shared_data / "wsss4luad_val",
        classes=classes,
        patch_size=160,
        stride=80,
        rule="heterogeneous",
    )
    assert sampler.class_map.names == ("tumor_epithelium", "tumor_stroma", "normal_lung")
    samples = list(sampler)
    assert len(samples) > 5
    for s in samples:
        assert set(np.unique(s.mask)) <= {0, 1, 2, 255}
        assert window_rule_ok(s.mask, 3)
    whole = TilesSampler(root=shared_data / "wsss4luad_val", limit=3).take(3)
    assert {int(v) for s in whole for v in np.unique(s.mask)} <= {0, 1, 2, 3}
    assert any(
        s.image.shape[0] != s.image.shape[1]
        for s in TilesSampler(root=shared_data / "wsss4luad_val")
    )


def test_unknown_codes_error_or_ignore(shared_data):
    root = shared_data / "wsss4luad_val"
    with pytest.raises(InputError, match=r"codes \[3\] that map to no class"):
        list(TilesSampler(root=root, classes=["a", "b", "c"]))
    masks = [
        s.mask
        for s in TilesSampler(root=root, classes=["a", "b", "c"], unknown_labels="ignore", limit=5)
    ]
    assert any((m == 255).any() for m in masks)


def test_missing_mask_and_missing_classes(tmp_path, shared_data):
    root = tmp_path / "tiles"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ("a", "b"):
        shutil.copy(
            shared_data / "glas" / "images" / "testA_10_r0_c0.png", root / "images" / f"{name}.png"
        )
    shutil.copy(shared_data / "glas" / "masks" / "testA_10_r0_c0.png", root / "masks" / "a.png")
    with pytest.raises(InputError, match=r"have no mask of the same name .*\['b.png'\]"):
        TilesSampler(root=root, classes=["x", "y"])
    (root / "masks" / "b.png").write_bytes(b"broken")
    with pytest.raises(InputError, match="give classes"):
        TilesSampler(root=root)
    with pytest.raises(InputError, match="cannot read mask .*b.png"):  # at construction
        TilesSampler(root=root, classes=["x", "y"])
    shutil.rmtree(root / "masks")
    with pytest.raises(InputError, match="has no 'masks/' folder"):
        TilesSampler(root=root, classes=["x", "y"])


def test_mismatched_sizes(tmp_path):
    root = tmp_path / "tiles"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / "t.png")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(root / "masks" / "t.png")
    # from the headers, before any sample: the mask, its size and the valid one
    with pytest.raises(
        InputError, match="mask .*t.png is 32 x 16 px but its image .* give a 32 x 32"
    ):
        TilesSampler(root=root, classes=["x"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rule": "mixed"}, "rule='mixed'"),
        ({"stride": 64}, "stride is given without patch_size"),
        ({"preset": "panda"}, "known presets"),
        ({"patch_size": 0}, "patch_size=0"),
    ],
)
def test_options_are_validated(shared_data, options, message):
    with pytest.raises(InputError, match=message):
        TilesSampler(root=shared_data / "glas", **options)


def test_presets_live_in_the_plugin():
    import htd_core.data
    from htd_plugins.samplers.tiles import TILE_SETS

    assert TILE_SETS["camelyon_mini"]["threshold"] == 127
    assert not hasattr(htd_core.data, "TILE_SETS")  # the core holds no dataset presets


def test_tiles_smaller_than_the_patch_are_refused_when_sampling(tmp_path):
    """A 1 x 1 tile was written as a sample; the problem showed only at training."""
    root = tmp_path / "tiles"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, side in (("a", 64), ("b", 1)):
        Image.fromarray(np.full((side, side, 3), 200, np.uint8)).save(
            root / "images" / f"{name}.png"
        )
        Image.fromarray(np.zeros((side, side), np.uint8)).save(root / "masks" / f"{name}.png")
    with pytest.raises(InputError, match=r"tile .*b.png is 1 x 1 px, smaller than min_size=16"):
        list(TilesSampler(root=root, classes=["x"]))
    with pytest.raises(InputError, match=r"b.png is 1 x 1 px, smaller than patch_size=32"):
        list(TilesSampler(root=root, classes=["x"], patch_size=32))
    with pytest.warns(UserWarning, match=r"1 tile\(s\) .* smaller than 32 px .*\['b.png'\]"):
        kept = list(TilesSampler(root=root, classes=["x"], patch_size=32, small_tiles="skip"))
    assert len(kept) == 4 and all(s.image.shape == (32, 32, 3) for s in kept)
    with pytest.raises(InputError, match="small_tiles='keep'"):
        TilesSampler(root=root, classes=["x"], small_tiles="keep")


def test_match_and_split_choose_tiles_by_source_image(shared_data):
    """GlaS: split=train is exactly the official train_* tiles, split=test the testA_/testB_
    ones; a set without official prefixes is split at random, whole source images per side."""
    glas = shared_data / "glas"
    names = lambda sampler: [p[0].name for p in sampler.pairs]  # noqa: E731
    train = names(TilesSampler(root=glas, split="train"))
    test = names(TilesSampler(root=glas, split="test"))
    assert len(train) == 340 and all(n.startswith("train_") for n in train)
    assert len(test) == 320 and all(n.startswith(("testA_", "testB_")) for n in test)
    only_b = names(TilesSampler(root=glas, split="test", match="testB_*"))
    assert len(only_b) == 80 and set(only_b) <= set(test)
    with pytest.raises(InputError, match="no tile matches"):
        TilesSampler(root=glas, split="train", match="testA_*")
    with pytest.raises(InputError, match="split='val'"):
        TilesSampler(root=glas, split="val")
    luad = shared_data / "wsss4luad_val"
    parts = [
        {source_id(n) for n in names(TilesSampler(root=luad, split=s, test_fraction=0.25))}
        for s in ("train", "test")
    ]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    every = {source_id(p[0].name) for p in TilesSampler(root=luad).pairs}
    assert parts[0] | parts[1] == every
