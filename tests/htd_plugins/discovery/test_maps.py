"""End to end on the real CMU slide at low resolution: embed -> cluster -> nested pseudo maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_core.types import ClassMap
from htd_plugins.discovery.clustering import Phenotypes
from htd_plugins.discovery.maps import maps_from_stores
from htd_plugins.discovery.store import EmbeddingStore


def test_pipeline_writes_maps_at_every_level(cmu_run):
    slide_id, phenotypes = cmu_run["slide_id"], cmu_run["phenotypes"]
    meta = cmu_run["report"].results[slide_id]
    assert meta["n_patches"] > 300 and not cmu_run["report"].skipped
    assert phenotypes.levels == (5, 10, 20, 50, 100) and phenotypes.tree.n_leaves == 100
    maps = cmu_run["maps"][slide_id]
    rows, cols = meta["grid"]["rows"], meta["grid"]["cols"]
    leaf = None
    for k in phenotypes.levels:
        mask = np.asarray(Image.open(maps[k]))
        side = json.loads(maps[k].with_suffix(".json").read_text())
        assert mask.dtype == np.uint8 and mask.shape == (rows, cols)
        assert (mask != 255).sum() == meta["n_patches"]  # every tissue cell labelled, rest 255
        assert side["k"] == k and side["names"] == list(ClassMap.from_dict(side["classes"]).names)
        assert side["downsample"] * cols >= side["slide_dims"][0] > side["downsample"] * (cols - 1)
        assert len(set(np.unique(mask)) - {255}) > (k // 2 if k <= 20 else 10)
        if k == 100:
            leaf = mask
    # Nesting, read back from the written maps: a finer class never straddles two coarser ones.
    tissue = leaf != 255
    for fine, coarse in ((100, 50), (50, 20), (20, 10), (10, 5)):
        a = np.asarray(Image.open(maps[fine]))[tissue]
        b = np.asarray(Image.open(maps[coarse]))[tissue]
        pairs = np.unique(np.stack([a, b]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]


def test_maps_follow_tissue_not_noise(cmu_run):
    """Phenotypes are spatially coherent: neighbouring cells agree far above chance."""
    mask = np.asarray(Image.open(cmu_run["maps"][cmu_run["slide_id"]][5]))
    right = (mask[:, :-1] != 255) & (mask[:, 1:] != 255)
    agree = (mask[:, :-1] == mask[:, 1:])[right].mean()
    values = mask[mask != 255]
    chance = ((np.bincount(values) / len(values)) ** 2).sum()
    assert agree > chance + 0.15


def test_samplers_label_mask_reader_accepts_the_maps(cmu_run):
    label_masks = pytest.importorskip("htd_plugins.slides.label_masks")
    png = cmu_run["maps"][cmu_run["slide_id"]][20]
    side = json.loads(png.with_suffix(".json").read_text())
    names, downsample = label_masks.load_code_names(None, png)
    assert names == dict(enumerate(side["names"])) and downsample == side["downsample"]
    mask = label_masks.read_label_mask(png)
    cells = label_masks.mask_to_grid(
        mask, mask.shape, downsample, tuple(side["slide_dims"]), downsample, str(png)
    )
    assert np.array_equal(cells, mask)


def test_maps_refuse_a_store_of_another_encoder(cmu_run, tmp_path, encoder_cls, identity_of):
    other = EmbeddingStore(tmp_path / "other", identity_of(encoder_cls(seed=5), 4.0, 16))
    with pytest.raises(InputError, match="clustering was fitted on"):
        maps_from_stores([other.root], cmu_run["root"] / "phenotypes", tmp_path / "maps")
    loaded = Phenotypes.load(cmu_run["root"] / "phenotypes")
    assert loaded.clustering_id == cmu_run["phenotypes"].clustering_id
    with pytest.raises(InputError, match="holds no clustering"):
        Phenotypes.load(tmp_path)


def test_pseudo_maps_for_one_image(tmp_path, tiny_encoder):
    """The ``make demo`` fallback: one real image (shipped with tiatoolbox) -> pseudo maps."""
    from htd_plugins.discovery import pseudo_maps_for_image, tiatoolbox_sample_image

    result = pseudo_maps_for_image(tiatoolbox_sample_image(), tmp_path, encoder=tiny_encoder)
    assert result["levels"] == [3, 5, 10] and 80 < result["n_patches"] <= 100
    mask = np.asarray(Image.open(result["maps"][5]))
    assert mask.shape == (10, 10) and len(set(np.unique(mask)) - {255}) >= 3
    again = pseudo_maps_for_image(tiatoolbox_sample_image(), tmp_path, encoder=tiny_encoder)
    assert np.array_equal(np.asarray(Image.open(again["maps"][5])), mask)  # resumed, same maps


def _poisoned_store(cmu_run, tmp_path, rows=(7, 30)):
    """A copy of the real CMU store with NaN in some embedding rows."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(cmu_run["root"] / "store", store)
    entry = EmbeddingStore(store).entry(cmu_run["slide_id"])
    emb = np.memmap(entry.folder / "embeddings.f16", np.float16, "r+", shape=(entry.n, 16))
    emb[list(rows), 3] = np.nan
    emb.flush()
    return store, entry.folder / "embeddings.f16"


def test_nan_rows_are_named_and_nothing_is_written(cmu_run, tmp_path):
    """cluster ended in a torch traceback with a partial file; maps gave the NaN patch
    phenotype 0. Both name the store file and its rows, and write nothing."""
    from htd_plugins.discovery.clustering import cluster_stores

    store, f16 = _poisoned_store(cmu_run, tmp_path)
    message = rf"{f16} holds NaN or inf in 2 of \d+ rows \(rows 7, 30\)"
    with pytest.raises(InputError, match=message):
        cluster_stores([store], tmp_path / "phen", progress=False)
    with pytest.raises(InputError, match=message):
        maps_from_stores([store], cmu_run["root"] / "phenotypes", tmp_path / "maps", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
