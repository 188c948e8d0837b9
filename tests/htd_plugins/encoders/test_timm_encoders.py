from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import htd_core
from htd_core.errors import HtdError, InputError
from htd_core.testing import EncoderConformance
from htd_plugins.encoders import timm_encoders
from htd_plugins.encoders.timm_encoders import ENCODERS, LUNIT_MEAN, Resnet50Encoder

#: Tiny variants (same architecture family, fewer blocks, small inputs) for fast checks.
TINY = {
    "uni": ({"depth": 1}, 32),
    "uni2_h": ({"depth": 1}, 28),
    "dinov2_vits14": ({"depth": 1}, 28),
    "dinov2_vitl14": ({"depth": 1}, 28),
    "vit_small": ({"depth": 1}, 32),
    "resnet50": ({"layers": [1, 1, 1, 1]}, 32),
}
CLASSES = {**ENCODERS, "resnet50": Resnet50Encoder}
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)
_cache: dict[str, htd_core.Encoder] = {}


def tiny(name: str, weights="random", **options) -> htd_core.Encoder:
    overrides, size = TINY[name]
    return CLASSES[name](weights=weights, arch_overrides=overrides, input_size=size, **options)


def cached(name: str) -> htd_core.Encoder:
    if name not in _cache:
        _cache[name] = tiny(name)
    return _cache[name]


@pytest.mark.parametrize("name", list(TINY))
class TestTimmConformance(EncoderConformance):
    @pytest.fixture(autouse=True)
    def _name(self, name):
        self.name = name

    def make_encoder(self):
        return cached(self.name)


@pytest.mark.parametrize("name", list(TINY))
def test_local_weights_roundtrip(tmp_path, name):
    enc = cached(name)
    path = tmp_path / f"{name}.safetensors"
    save_file(enc.model.state_dict(), str(path))
    loaded = tiny(name, weights=path)
    assert not loaded.is_random and "RANDOM" not in loaded.label
    assert len(loaded.weights_id) == 16 and loaded.weights_id != "random"
    assert torch.allclose(loaded(IMAGES), enc(IMAGES), atol=1e-5)
    assert enc.embed_dim == {"uni": 1024, "uni2_h": 1536, "dinov2_vits14": 384,
                             "dinov2_vitl14": 1024, "vit_small": 384, "resnet50": 2048}[name]  # fmt: skip


def test_random_weights_are_seeded():
    assert torch.equal(tiny("vit_small")(IMAGES), cached("vit_small")(IMAGES))


def test_dinov2_original_checkpoint_format(tmp_path):
    # facebookresearch/dinov2 checkpoints: 518 px position grid (37 x 37) and a mask token.
    import timm

    src = timm.create_model("vit_small_patch14_dinov2", num_classes=0, depth=1, img_size=518)
    state = dict(src.state_dict(), mask_token=torch.zeros(1, 384))
    assert state["pos_embed"].shape[1] == 1 + 37 * 37
    torch.save(state, tmp_path / "dinov2_vits14_pretrain.pth")
    enc = tiny("dinov2_vits14", weights=tmp_path / "dinov2_vits14_pretrain.pth")
    assert enc.model.pos_embed.shape[1] == 1 + 2 * 2  # resized to the 28 px input
    assert torch.equal(enc.model.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_barlow_twins_rn50_pathology_format(tmp_path):
    # Lunit's bt_rn50_ep200.torch: a torchvision ResNet-50 trunk state dict without fc.
    from torchvision.models.resnet import Bottleneck, ResNet

    trunk = ResNet(Bottleneck, [1, 1, 1, 1]).eval()
    del trunk.fc
    torch.save(trunk.state_dict(), tmp_path / "bt_rn50_ep200.torch")
    enc = tiny("resnet50", weights=tmp_path / "bt_rn50_ep200.torch", stats="lunit")
    assert enc.mean == LUNIT_MEAN
    pixels = enc.preprocess(IMAGES)
    with torch.inference_mode():
        x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(pixels))))
        x = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x))))
        expected = x.mean((2, 3))
    assert torch.allclose(enc(IMAGES), expected, atol=1e-5)
    # the same weights inside a training checkpoint: wrapper, prefixes and a projector head
    wrapped = {"state_dict": {f"module.backbone.{k}": v for k, v in trunk.state_dict().items()}}
    wrapped["state_dict"]["module.projector.0.weight"] = torch.zeros(8, 2048)
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    assert torch.allclose(
        tiny("resnet50", weights=tmp_path / "checkpoint.pth", stats="lunit")(IMAGES), enc(IMAGES)
    )


def test_wrong_architecture_names_the_keys(tmp_path):
    save_file(cached("vit_small").model.state_dict(), str(tmp_path / "vit.safetensors"))
    with pytest.raises(InputError, match=r"missing keys \(bn1\.bias.*unexpected keys \(blocks\."):
        tiny("resnet50", weights=tmp_path / "vit.safetensors")
    with pytest.raises(InputError, match=r"missing keys \(blocks\.1\."):  # 1 block given, 12 wanted
        ENCODERS["vit_small"](weights=tmp_path / "vit.safetensors", input_size=32)
    with pytest.raises(InputError, match="wrong shape"):
        narrow = {"depth": 1, "embed_dim": 192, "num_heads": 3}
        ENCODERS["vit_small"](weights=tmp_path / "vit.safetensors", arch_overrides=narrow)


def test_bad_weights_and_options(tmp_path):
    with pytest.raises(InputError, match="weights='random'"):
        ENCODERS["uni"]()
    with pytest.raises(InputError, match="does not exist"):
        tiny("vit_small", weights=tmp_path / "missing.safetensors")
    torch.save({"model": object()}, tmp_path / "pickled.pt")
    with pytest.raises(InputError, match="weights-only"):
        tiny("vit_small", weights=tmp_path / "pickled.pt")
    with pytest.raises(InputError, match="multiple of its patch size 16"):
        ENCODERS["vit_small"](weights="random", arch_overrides={"depth": 1}, input_size=30)
    with pytest.raises(InputError, match="stats"):
        Resnet50Encoder(weights="random", stats="he")
    with pytest.raises(InputError, match="mean"):
        tiny("resnet50", mean=(0.5, 0.5))


def test_registered_by_plugin(register_plugin):
    register_plugin(timm_encoders, "timm_encoders")
    reg = htd_core.get_registry("encoders")
    assert reg.names() == sorted(TINY)
    enc = htd_core.create(
        "encoders", "resnet50", weights="random", arch_overrides=TINY["resnet50"][0]
    )
    assert enc.label == "resnet50 (RANDOM WEIGHTS)"
    with pytest.raises(HtdError, match="no option 'weight'"):
        htd_core.create("encoders", "vit_small", weight="random")


def test_channels_last_and_bf16_flag_keep_features_on_cpu():
    fast = tiny("resnet50", channels_last=True, bf16=True)  # bf16 applies on CUDA only
    assert torch.allclose(fast(IMAGES), cached("resnet50")(IMAGES), atol=1e-5)
