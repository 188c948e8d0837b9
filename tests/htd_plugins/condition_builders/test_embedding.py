from __future__ import annotations

import numpy as np
import pytest
import torch

import htd_core
from htd_core.errors import HtdError, InputError
from htd_core.testing import ConditionBuilderConformance, real_tiles, synthetic_sample
from htd_core.types import TissueSample
from htd_plugins.condition_builders import embedding as embedding_module
from htd_plugins.condition_builders.crops.bank import CropBank
from htd_plugins.condition_builders.embedding import EmbeddingBuilder
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder
from htd_plugins.encoders import timm_encoders
from htd_plugins.encoders.timm_encoders import ENCODERS

TINY = {"weights": "random", "arch_overrides": {"depth": 1}, "input_size": 32}
_ENCODER = ENCODERS["vit_small"](**TINY)  # 1-block ViT-S: shapes only


def make(**options) -> EmbeddingBuilder:
    return EmbeddingBuilder(_ENCODER, crop_options={"d_base": 24, "min_size": 4}, **options)


class TestEmbeddingConformance(ConditionBuilderConformance):
    needs_image = True

    def make_builder(self):
        return make()


class TestEmbeddingWithBankConformance(ConditionBuilderConformance):
    bank = CropBank.from_samples(
        [synthetic_sample(64, seed=s) for s in range(4)], size=16, min_size=4
    )

    def make_builder(self):
        return EmbeddingBuilder(_ENCODER, crop_options={"bank": self.bank, "min_size": 4})


def test_tokens_are_crop_embeddings_on_real_tiles(shared_data):
    sample = real_tiles(shared_data, "wsss4luad_val", n=1, size=224)[0]
    builder = make()
    cond = builder.build(sample, seed=1)
    names = sample.class_map.names
    assert cond.spatial is None and cond.token_names == tuple(f"embed:{n}" for n in names)
    assert cond.tokens.shape == (len(names), _ENCODER.embed_dim)
    for i, name in enumerate(names):
        p = cond.meta["crop_provenance"][name]
        if p is None or "source" not in p:
            assert torch.all(cond.tokens[i] == 0)  # absent class: zero token
            continue
        crop = sample.image[p["y"] : p["y"] + p["size"], p["x"] : p["x"] + p["size"]]
        assert torch.allclose(cond.tokens[i], _ENCODER(crop[None])[0], atol=1e-4)
    normed = make(normalize=True).build(sample, seed=1).tokens
    lengths = normed.norm(dim=1)
    assert torch.allclose(lengths[lengths > 0], torch.ones(1), atol=1e-5)


def test_composes_with_semantic_map():
    sample = synthetic_sample(64)
    cond = (SemanticMapBuilder() + make()).build(sample, seed=0)
    assert cond.channels == tuple(f"map:{n}" for n in sample.class_map.names)
    assert cond.tokens.shape[0] == len(sample.class_map)


def test_nan_embeddings_are_an_error():
    broken = ENCODERS["vit_small"](**TINY)
    with torch.no_grad():
        broken.model.norm.weight.fill_(float("nan"))
    builder = EmbeddingBuilder(broken, crop_options={"d_base": 24, "min_size": 4})
    with pytest.raises(
        InputError, match=r"gave NaN or inf features for 3 of 3 crops .*\(weights: "
    ):
        builder.build(synthetic_sample(64), seed=0)


def test_bad_input():
    sample = synthetic_sample(64)
    with pytest.raises(InputError, match="configured for 2 classes"):
        make(classes=["tumor", "stroma"]).build(sample)
    with pytest.raises(InputError, match="configured for 2 classes"):
        make(classes=["tumor", "stroma"]).token_names(sample.class_map)
    with pytest.raises(InputError, match="bank="):
        make().build(TissueSample(None, sample.mask, sample.class_map))
    with pytest.raises(InputError, match="encoder must be"):
        EmbeddingBuilder(encoder=3)
    with pytest.raises(InputError, match="seed="):
        EmbeddingBuilder(_ENCODER, crop_options={"seed": 1})


def test_created_by_name(register_plugin):
    register_plugin(embedding_module, "embedding")
    register_plugin(timm_encoders, "timm_encoders")
    builder = htd_core.create(
        "condition_builders", "embedding", encoder="vit_small", encoder_options=TINY
    )
    assert builder.token_dim == 384
    cond = builder.build(synthetic_sample(64, seed=2), seed=0)
    assert cond.tokens.shape == (3, 384) and np.isfinite(cond.tokens.numpy()).all()
    with pytest.raises(HtdError, match="needs weights"):  # registry wraps it in an option error
        htd_core.create("condition_builders", "embedding", encoder="uni")


def test_each_distinct_crop_is_embedded_once_and_the_tokens_do_not_change():
    """Crops drawn from a bank recur across builds: the encoder sees each distinct crop once,
    and the tokens equal those of a builder that embeds every crop every time."""
    bank = CropBank.from_samples([synthetic_sample(64, seed=s) for s in range(4)], size=16,
                                 min_size=4)  # fmt: skip
    seen: list[int] = []
    forward = _ENCODER.forward

    def counting(pixels):
        seen.append(len(pixels))
        return forward(pixels)

    cached = EmbeddingBuilder(_ENCODER, bank=bank, crop_options={"min_size": 4})
    plain = EmbeddingBuilder(_ENCODER, bank=bank, crop_options={"min_size": 4}, cache_size=0)
    samples = [synthetic_sample(64, seed=s) for s in range(4, 8)]
    builds = [(s, seed) for seed in range(12) for s in samples]
    try:
        _ENCODER.forward = counting
        tokens = [cached.build(s, seed=seed).tokens for s, seed in builds]
        embedded = sum(seen)
        seen.clear()
        reference = [plain.build(s, seed=seed).tokens for s, seed in builds]
    finally:
        del _ENCODER.forward
    assert embedded == len(cached._cache) < sum(seen)  # once per distinct crop, not per use
    for a, b in zip(tokens, reference, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    small = EmbeddingBuilder(_ENCODER, bank=bank, crop_options={"min_size": 4}, cache_size=3)
    for s, seed in builds:
        small.build(s, seed=seed)
    assert len(small._cache) == 3  # least recently used dropped
    with pytest.raises(InputError, match="cache_size"):
        EmbeddingBuilder(_ENCODER, cache_size=-1)


def test_whole_crop_embeds_the_drawn_bank_crop_once_per_entry():
    """``whole_crop``: the same draws as the placed squares (same classes tokened), each token
    the embedding of the whole bank entry, so the encoder runs at most once per entry however
    many sizes the squares placed from it take."""
    bank = CropBank.from_samples([synthetic_sample(64, seed=s) for s in range(4)], size=24,
                                 min_size=4)  # fmt: skip
    options = {"bank": bank, "crop_options": {"min_size": 4, "placement": "outside"}}
    whole = EmbeddingBuilder(_ENCODER, whole_crop=True, **options)
    placed = EmbeddingBuilder(_ENCODER, **options)
    samples = [synthetic_sample(64, seed=s) for s in range(4, 8)]
    builds = [(s, seed) for seed in range(10) for s in samples]
    entries, sizes = set(), set()
    for s, seed in builds:
        a, b = whole.build(s, seed=seed), placed.build(s, seed=seed)
        assert a.meta == b.meta  # the same draws, placed alike
        for name, prov in a.meta["crop_provenance"].items():
            if prov and "bank_index" in prov:
                k = a.token_names.index(f"embed:{name}")
                entry = bank.crops(name)[prov["bank_index"]].image
                with torch.inference_mode():
                    expected = _ENCODER.forward(_ENCODER.preprocess(np.asarray(entry)))[0]
                assert torch.allclose(a.tokens[k], expected.float(), atol=1e-5)
                assert b.tokens[k].abs().sum() > 0
                entries.add((name, prov["bank_index"]))
                sizes.add((name, prov["bank_index"], prov["placed_size"]))
    assert len(whole._cache) == len(entries) < len(sizes) <= len(placed._cache)
    assert "whole_crop=True" in repr(whole)
