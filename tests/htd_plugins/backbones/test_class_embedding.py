"""The backbones with ``crop_slots``: a learned class embedding replaces the class-index channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.testing import synthetic_sample
from htd_plugins.backbones.ldm.modules import ClassEmbedding, class_embedding_for
from htd_plugins.condition_builders.crop_slots import CropSlotsBuilder

from .conftest import GEN, TINY_FIT

CLASSES = tuple(f"phenotype_{i:02d}" for i in range(100))


def samples(n: int = 4):
    return [synthetic_sample(16, classes=CLASSES, seed=s) for s in range(n)]


def builder():
    return CropSlotsBuilder(slots=2, crop_options={"d_base": 6, "min_size": 2})


def test_embedding_replaces_the_index_channel():
    emb = ClassEmbedding(num_classes=100, embedding_dim=4, channel=0)
    x = torch.zeros(2, 3, 5, 5)
    x[0, 0, 1, 1], x[0, 1] = 43.0, 7.0  # class 42 at one pixel; another channel kept
    out = emb(x)
    assert out.shape == (2, 2 + 4, 5, 5)
    torch.testing.assert_close(out[0, :4, 1, 1], emb.embedding.weight[43])
    assert not out[:, :4, 0, 0].any(), "index 0 (ignored / dropped) embeds to zero"
    assert not out[1].any(), "the null condition stays all zero"
    torch.testing.assert_close(out[0, 4], x[0, 1])
    assert class_embedding_for(("map:a", "map:b"), 4) is None
    found = class_embedding_for(("slot0:mask", "class_index:7"), 3)
    assert (found.config.num_classes, found.config.channel, found.added_channels) == (7, 1, 2)
    with pytest.raises(InputError, match="2 class-index channels"):
        class_embedding_for(("class_index:7", "class_index:7"), 3)


@pytest.mark.parametrize("name", ["controlnet_ldm", "concat_ldm"])
def test_trains_saves_loads_and_generates(name, tmp_path):
    import htd_core

    backbone = htd_core.create("backbones", name, preset="tiny", class_embedding_dim=4)
    data, slots = samples(), builder()
    backbone.fit(data, slots, output_dir=str(tmp_path / "run"), **TINY_FIT)
    parts = backbone.denoiser.parts
    emb = parts["class_embedding"]
    assert emb.config.num_classes == 100 and emb.embedding.weight.shape == (101, 4)
    # the embedding was trained: rows of the classes seen moved away from their init
    seen = np.unique(np.concatenate([s.mask[s.mask < 100] for s in data])).astype(np.int64) + 1
    with torch.random.fork_rng(devices=[]):  # fit makes it first under manual_seed(seed=0)
        torch.manual_seed(0)
        fresh = ClassEmbedding(100, 4)
    assert not emb.embedding.weight[0].any(), "the padding row (index 0) stays zero"
    moved = (emb.embedding.weight[seen] - fresh.embedding.weight[seen]).abs().amax(dim=1)
    assert (moved > 0).sum() >= len(seen) // 2
    width = 1 + 5 * 2 - 1 + 4  # index channel -> 4 embedding channels
    if name == "controlnet_ldm":
        assert parts["controlnet"].config.conditioning_channels == width
        assert not (tmp_path / "run" / "model" / "model_index.json").exists()
    else:
        assert parts["rescaler"].config.in_channels == width
    conds = [slots.build(s, seed=0) for s in data[:2]]
    images = backbone.generate(conds, GEN)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    loaded = type(backbone).load(tmp_path / "run" / "model", device="cpu")
    np.testing.assert_array_equal(loaded.generate(conds, GEN), images)
    # another class count is another channel name: refused, not silently mis-embedded
    other = synthetic_sample(16, classes=CLASSES[:5], seed=0)
    with pytest.raises(InputError, match="class_index"):
        backbone.generate([slots.build(other, seed=0)], GEN)


def test_embedding_dim_is_validated():
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM

    with pytest.raises(InputError, match="class_embedding_dim"):
        ControlNetLDM(preset="tiny", class_embedding_dim=0)


def test_two_class_index_channels_are_refused_before_training(tmp_path):
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM

    twice = builder() + builder()
    with pytest.raises(InputError, match="2 class-index channels"):
        ControlNetLDM(preset="tiny").fit(samples(2), twice, output_dir=str(tmp_path / "run"),
                                         **TINY_FIT)  # fmt: skip
    assert not (tmp_path / "run" / "vae").exists()  # no autoencoder trained first
