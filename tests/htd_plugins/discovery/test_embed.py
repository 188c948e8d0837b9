"""Embedding extraction: store identity, resume after a kill, shards, bad slides."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_plugins.discovery import tiatoolbox_sample_image
from htd_plugins.discovery.embed import embed_slide, embed_slides, select_shard
from htd_plugins.discovery.patches import GridOptions
from htd_plugins.discovery.store import EmbeddingStore

#: The real H&E image of the tiatoolbox wheel read at 2 um/px: 250 x 250 px, 100 patches.
OPTIONS = GridOptions(read_mpp=2.0, patch_size=32, stride=25, slide_mpp=0.5)


@pytest.fixture
def store(tmp_path, tiny_encoder, identity_of):
    return EmbeddingStore(tmp_path / "store", identity_of(tiny_encoder, 2.0, 32))


def test_resume_after_interrupted_embed(tmp_path, store, encoder_cls, identity_of):
    image = tiatoolbox_sample_image()
    sid = opaque_id(image)
    killed = encoder_cls(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        embed_slide(store, image, killed, OPTIONS, batch_size=16, progress=False)
    folder = store.slide_folder(sid)
    assert not store.is_complete(sid)  # no meta.json: not mistaken for a finished slide
    assert json.loads((folder / "progress.json").read_text())["done"] == 32
    # the store keeps no path: the resumed run is given the slide again, here from elsewhere
    moved = tmp_path / "moved" / image.name
    moved.parent.mkdir()
    shutil.copy(image, moved)
    resumed = encoder_cls()
    meta = embed_slide(store, moved, resumed, OPTIONS, batch_size=16, progress=False)
    assert meta["status"] == "done" and meta["n_patches"] > 32 and meta["slide_id"] == sid
    assert resumed.calls == -(-(meta["n_patches"] - 32) // 16)  # only the missing batches
    assert not (folder / "progress.json").exists() and not (folder / "embeddings.partial").exists()
    for f in folder.iterdir():
        assert (
            str(tmp_path).encode() not in f.read_bytes() and b"target_image" not in f.read_bytes()
        )

    fresh = EmbeddingStore(tmp_path / "fresh", store.info)
    embed_slide(fresh, image, encoder_cls(), OPTIONS, batch_size=16, progress=False)
    a = np.asarray(store.entry(sid).embeddings())
    b = np.asarray(fresh.entry(sid).embeddings())
    assert a.dtype == np.float16 and np.array_equal(a, b)
    assert np.array_equal(store.entry(sid).coords(), fresh.entry(sid).coords())
    again = embed_slide(store, image, encoder_cls(fail_after=0), OPTIONS, progress=False)
    assert again["status"] == "already done"


def test_store_refuses_another_encoder(store, tiny_encoder, encoder_cls, identity_of):
    with pytest.raises(InputError, match="weights_id"):
        EmbeddingStore(store.root, identity_of(encoder_cls(seed=3), 2.0, 32))
    with pytest.raises(InputError, match="read_mpp"):
        EmbeddingStore(store.root, identity_of(tiny_encoder, 0.5, 32))
    with pytest.raises(InputError, match="holds 'tiny' embeddings"):
        store.check_encoder("tiny", "random-seed3")
    with pytest.raises(InputError, match="not an embedding store"):
        EmbeddingStore(store.root / "nothing")


def test_missing_and_blank_slides_are_reported_others_done(tmp_path, store, tiny_encoder):
    rng = np.random.default_rng(0)
    blank = tmp_path / "blank.png"
    Image.fromarray((238 + rng.integers(-4, 5, (400, 400, 3))).astype(np.uint8)).save(blank)
    image = tiatoolbox_sample_image()
    report = embed_slides(
        store, [tmp_path / "gone.svs", blank, image], tiny_encoder, OPTIONS, progress=False
    )
    assert list(report.skipped) == [str(tmp_path / "gone.svs")]
    assert "does not exist" in report.skipped[str(tmp_path / "gone.svs")]
    blank_id = opaque_id(blank)
    assert (
        report.results[blank_id]["status"] == "no tissue"
        and report.results[blank_id]["n_patches"] == 0
    )
    assert report.results[opaque_id(image)]["n_patches"] > 50
    assert store.slide_ids() == sorted([blank_id, opaque_id(image)])
    assert report.names == {blank_id: "blank.png", opaque_id(image): image.name}
    assert store.entry(blank_id).embeddings().shape == (0, tiny_encoder.embed_dim)


def test_shards_partition_the_slide_list():
    slides = [f"/data/s{i:02d}.svs" for i in range(10)]
    shards = [select_shard(slides, (i, 3)) for i in range(3)]
    assert sorted(str(p) for s in shards for p in s) == sorted(slides)
    assert not set(shards[0]) & set(shards[1])
    with pytest.raises(InputError, match="shard"):
        select_shard(slides, (3, 3))
    with pytest.raises(InputError, match="unique"):
        select_shard(["/a/x.svs", "/b/x.svs"], (0, 1))


def test_changed_grid_options_are_refused(store, tiny_encoder):
    image = tiatoolbox_sample_image()
    embed_slide(store, image, tiny_encoder, OPTIONS, progress=False)
    other = GridOptions(read_mpp=2.0, patch_size=32, stride=16, slide_mpp=0.5)
    with pytest.raises(InputError, match="stride"):
        embed_slide(store, image, tiny_encoder, other, progress=False)
