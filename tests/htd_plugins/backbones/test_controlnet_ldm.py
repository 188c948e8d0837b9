"""controlnet_ldm: conformance, diffusers-pipeline equivalence, guidance, bad input."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.generation import GenerationOptions
from htd_core.testing import BackboneConformance, synthetic_sample
from htd_core.types import ClassMap, Condition, TissueSample
from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

from .conftest import GEN, TINY_FIT


class TestControlNetConformance(BackboneConformance):
    fit_options = TINY_FIT

    def make_backbone(self):
        return ControlNetLDM(preset="tiny")

    def make_builder(self):
        return SemanticMapBuilder()


def test_parts_fit_the_condition(trained_controlnet):
    backbone, builder, samples, _ = trained_controlnet
    controlnet = backbone.denoiser.parts["controlnet"]
    assert (
        controlnet.config.conditioning_channels == len(builder.channels(samples[0].class_map)) == 3
    )
    # the conditioning embedding downsamples pixel resolution to the latent grid
    cond = builder.build(samples[0]).spatial[None]
    emb = controlnet.controlnet_cond_embedding(cond)
    assert emb.shape[-1] == samples[0].size[1] // backbone.preset.vae_factor


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++"])
def test_diffusers_pipeline_reproduces_htd_sample(trained_controlnet, scheduler):
    from diffusers import StableDiffusionControlNetPipeline

    from htd_plugins.backbones.ldm.modules import TokenEncoder
    from htd_plugins.backbones.ldm.sampling import make_scheduler

    backbone, builder, samples, run = trained_controlnet
    conds = [builder.build(s, seed=0) for s in samples[:2]]
    ours = backbone.generate(
        conds,
        GenerationOptions(seed=5, scheduler=scheduler, num_inference_steps=3, guidance_scale=1.0),
    )
    model = run / "model"
    none = dict.fromkeys(
        ("text_encoder", "tokenizer", "safety_checker", "feature_extractor", "image_encoder")
    )
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        model, **none
    )  # components load on their own
    pipe.scheduler = make_scheduler(scheduler, dict(pipe.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    null = TokenEncoder.from_pretrained(model / "token_encoder").null_states(2, 0).detach()
    theirs = pipe(
        prompt_embeds=null, image=torch.stack([c.spatial for c in conds]), height=16, width=16,
        num_inference_steps=3, guidance_scale=1.0, output_type="np",
        generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)],
    ).images  # fmt: skip
    theirs = (theirs * 255).round().astype(np.uint8)
    assert theirs.shape == ours.shape
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1


def test_guidance_combines_null_and_conditional_predictions():
    """With guidance g, the step uses null + g * (cond - null); g <= 1 skips the null pass."""
    from diffusers import DDIMScheduler

    from htd_plugins.backbones.ldm.sampling import sample_latents

    calls = []

    def predict(x, t, keep):  # conditional rows predict 1, null rows 0
        calls.append(x.shape[0])
        return keep.float().view(-1, 1, 1, 1).expand_as(x).clone()

    def constant(value):
        return lambda x, t, keep: torch.full_like(x, value)

    kwargs = {"shape": (1, 2, 2), "num_inference_steps": 2, "device": torch.device("cpu")}
    gens = lambda: [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]  # noqa: E731
    guided = sample_latents(
        predict, DDIMScheduler(), generators=gens(), guidance_scale=3.0, **kwargs
    )
    expected = sample_latents(
        constant(3.0), DDIMScheduler(), generators=gens(), guidance_scale=1.0, **kwargs
    )
    torch.testing.assert_close(guided, expected)
    assert calls == [4, 4]  # null and conditional rows in one batch
    calls.clear()
    sample_latents(predict, DDIMScheduler(), generators=gens(), guidance_scale=1.0, **kwargs)
    assert calls == [2, 2]
    # rows without a condition are not guided
    mixed = sample_latents(predict, DDIMScheduler(), generators=gens(), guidance_scale=3.0,
                           keep=torch.tensor([True, False]), **kwargs)  # fmt: skip
    null = sample_latents(
        constant(0.0), DDIMScheduler(), generators=gens(), guidance_scale=1.0, **kwargs
    )
    torch.testing.assert_close(mixed[0], expected[0])
    torch.testing.assert_close(mixed[1], null[1])


def test_guidance_on_and_off(trained_controlnet):
    backbone, builder, samples, _ = trained_controlnet
    conds = [builder.build(s, seed=0) for s in samples[:2]]
    controlnet = backbone.denoiser.parts["controlnet"]
    saved = {k: v.clone() for k, v in controlnet.state_dict().items()}
    with torch.no_grad():  # stand in for a trained ControlNet: non-zero output convolutions
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(std=0.3, generator=torch.Generator().manual_seed(0))
    off = backbone.generate(conds, GEN.replace(seed=1, guidance_scale=1.0))
    on = backbone.generate(conds, GEN.replace(seed=1, guidance_scale=4.0))
    assert not np.array_equal(off, on)
    # the null condition is never guided: scale has no effect on unconditional samples
    null_a = backbone.generate([Condition()] * 2, GEN.replace(seed=1, guidance_scale=1.0))
    null_b = backbone.generate([Condition()] * 2, GEN.replace(seed=1, guidance_scale=4.0))
    assert np.array_equal(null_a, null_b)
    # and it differs from the conditional sample of the same seed
    assert not np.array_equal(null_a, off)
    controlnet.load_state_dict(saved)


def test_guided_sampling_masks_the_condition_once(trained_controlnet):
    """generate repeats and masks a batch's spatial condition once (``memo``), not at every
    step: the same latents as the per-step path, with guidance and a null row."""
    import functools

    from htd_plugins.backbones.ldm.sampling import sample_latents

    backbone, builder, samples, _ = trained_controlnet
    conds = [builder.build(s, seed=0) for s in samples[:2]] + [Condition()]
    spatial, tokens, keep, size = backbone._collate(conds)

    def latents(memo):
        predict = functools.partial(backbone._predict, spatial=spatial, tokens=tokens, memo=memo)
        return sample_latents(
            predict, backbone.sampling_scheduler("ddim"), shape=backbone.latent_shape(*size),
            generators=[torch.Generator().manual_seed(i) for i in range(3)],
            num_inference_steps=3, guidance_scale=3.0, device=torch.device("cpu"), keep=keep,
        )  # fmt: skip

    memo: dict = {}
    assert torch.equal(latents(memo), latents(None))
    assert list(memo) == [6]  # made once, for the 2 x 3 rows of null and conditional branch
    assert not memo[6][:3].any() and not memo[6][5].any()  # null branch, and the null row


def test_generation_is_per_sample_seeded(trained_controlnet):
    backbone, builder, samples, _ = trained_controlnet
    conds = [builder.build(s, seed=0) for s in samples]
    whole = backbone.generate(conds, GEN.replace(seed=2, batch_size=4)).astype(int)
    # same noise per sample; only float rounding may differ between batch shapes
    assert np.abs(whole - backbone.generate(conds, GEN.replace(seed=2, batch_size=1))).max() <= 1
    tail = backbone.generate(conds[2:], GEN.replace(seed=4, batch_size=3))
    assert np.abs(whole[2:] - tail).max() <= 1
    shifted = backbone.generate(conds[2:], GEN.replace(seed=2, batch_size=3))
    assert np.abs(whole[2:] - shifted).max() > 8


def test_condition_channel_count_mismatch(trained_controlnet):
    backbone = trained_controlnet[0]
    bad = Condition(spatial=torch.zeros(5, 16, 16), channels=[f"x{i}" for i in range(5)])
    with pytest.raises(InputError, match=r"5 spatial channels but the model was trained with 3"):
        backbone.generate([bad], GEN)


def test_map_with_untrained_classes(trained_controlnet):
    backbone = trained_controlnet[0]
    other = synthetic_sample(16, classes=("tumor", "stroma", "necrosis"))
    with pytest.raises(InputError, match=r"\['necrosis'\].*not trained on"):
        backbone.generate([SemanticMapBuilder().build(other)], GEN)
    with pytest.raises(InputError, match="not a multiple"):
        backbone.generate([SemanticMapBuilder().build(synthetic_sample(18))], GEN)


def test_checkpoint_folder_missing_a_component(trained_controlnet, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_controlnet[3] / "model", model)
    shutil.rmtree(model / "controlnet")
    with pytest.raises(InputError, match=r"missing component\(s\) \['controlnet'\]"):
        ControlNetLDM.load(model)
    with pytest.raises(InputError, match="not an htd model folder"):
        ControlNetLDM.load(tmp_path)


def test_tokens_reach_cross_attention(tmp_path):
    """A builder with tokens (like ``embedding``): tokens are projected, saved and checked."""
    from htd_core.interfaces import ConditionBuilder

    class TwoTokens(ConditionBuilder):
        token_dim = 6

        def channels(self, class_map):
            return ()

        def token_names(self, class_map):
            return ("embed:a", "embed:b")

        def build(self, sample, *, seed=None):
            tokens = torch.from_numpy(np.float32([[sample.mask.mean()] * 6, [seed or 0] * 6]))
            return Condition(tokens=tokens, token_names=("embed:a", "embed:b"))

    samples = [synthetic_sample(16, seed=s) for s in range(2)]
    backbone = ControlNetLDM(preset="tiny")
    backbone.fit(samples, SemanticMapBuilder() + TwoTokens(), **TINY_FIT)
    assert backbone.denoiser.parts["token_encoder"].projection.in_features == 6
    conds = [(SemanticMapBuilder() + TwoTokens()).build(s, seed=1) for s in samples]
    options = GenerationOptions(num_inference_steps=2, seed=0)
    images = backbone.generate(conds, options)
    backbone.save(tmp_path / "m")
    again = ControlNetLDM.load(tmp_path / "m").generate(conds, options)
    assert np.abs(images.astype(int) - again.astype(int)).max() <= 1
    with pytest.raises(InputError, match="tokens"):
        backbone.generate([SemanticMapBuilder().build(samples[0])], options)


def test_layout_classes_must_match_training(trained_controlnet):
    backbone, builder, samples, _ = trained_controlnet
    assert backbone.class_map == samples[0].class_map
    two = TissueSample(None, np.zeros((16, 16), np.uint8), ClassMap(("a", "b")))
    with pytest.raises(InputError, match="3 spatial channels|2 spatial channels"):
        backbone.generate([builder.build(two)], GEN)


def test_guidance_needs_a_trained_null_condition(trained_controlnet):
    """condition_dropout=0 never trains the null branch: guidance > 1 asked for at generation
    is refused; as a default generation option it falls back to 1 with a warning that says
    so (decided when the generation options are resolved, not at construction)."""
    from htd_core import Pipeline

    trained, builder, samples, _ = trained_controlnet
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the constructor holds no guidance: nothing to warn
        backbone = ControlNetLDM(preset="tiny", condition_dropout=0.0)
    backbone.autoencoder, backbone.denoiser = trained.autoencoder, trained.denoiser
    backbone.channels, backbone.class_map = trained.channels, trained.class_map
    conds = [builder.build(s, seed=0) for s in samples[:1]]
    default = GEN.replace(guidance_scale=2.0)  # the default guidance, not asked for
    with pytest.warns(UserWarning, match="using guidance_scale=1"):
        assert backbone.check_generation(default, frozenset()).guidance_scale == 1.0
    with pytest.raises(InputError, match="condition_dropout=0"):
        backbone.check_generation(GEN.replace(guidance_scale=3.0), frozenset({"guidance_scale"}))
    assert backbone.check_generation(GEN, frozenset({"guidance_scale"})) == GEN  # 1: no guidance
    assert backbone.generate(conds, GEN).shape == (1, 16, 16, 3)
    guided = GEN.replace(guidance_scale=3.0)
    assert trained.check_generation(guided, frozenset({"guidance_scale"})) == guided  # dropout 0.1
    assert trained.generate(conds, guided).shape == (1, 16, 16, 3)
    # the same through the pipeline, the one place generation options are resolved
    pipe = Pipeline(condition_builders=builder, backbone=backbone)
    with pytest.raises(InputError, match="condition_dropout=0"):
        pipe.generate(samples[:1], guidance_scale=3.0, num_inference_steps=2)
    with pytest.warns(UserWarning, match="using guidance_scale=1"):
        out = pipe.generate(samples[:1], num_inference_steps=2)
    assert out[0].meta["guidance_scale"] == 1.0 and out[0].image.shape == (16, 16, 3)


def test_reconstruct_passes_images_through_the_autoencoder(trained_controlnet):
    backbone, _, samples, _ = trained_controlnet
    images = np.stack([s.image for s in samples[:2]])
    odd = np.ascontiguousarray(images[:, :13, :11])  # not a multiple of the latent factor
    for batch in (images, odd):
        out = backbone.reconstruct(batch)
        assert out.shape == batch.shape and out.dtype == np.uint8
        assert not np.array_equal(out, batch)
    again = backbone.reconstruct(images)
    assert np.array_equal(again, backbone.reconstruct(images))  # posterior mean: deterministic
