from __future__ import annotations

import htd_timm_encoder
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import htd_core
from htd_core.errors import HtdError, InputError
from htd_core.testing import EncoderConformance

CONFIG = """
[encoders.tiny_vit]
arch = "vit_tiny_patch16_224"
weights = "tiny_vit.safetensors"
input_size = 32
mean = [0.7, 0.55, 0.66]
std = [0.2, 0.25, 0.2]
summary = "A one-block ViT-Ti/16 for tests"
model_kwargs = { depth = 1 }

[encoders.tiny_resnet]
arch = "resnet18"
model_kwargs = { layers = [1, 1, 1, 1] }
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A TOML file naming two encoders, and the weights file of the first."""
    folder = tmp_path_factory.mktemp("timm_encoder")
    path = folder / "encoders.toml"
    path.write_text(CONFIG)
    classes = htd_timm_encoder.encoder_classes(path)
    model = classes["tiny_vit"](weights="random").model
    save_file(model.state_dict(), str(folder / "tiny_vit.safetensors"))
    return path


@pytest.fixture
def registered(config, monkeypatch, register_plugin):
    monkeypatch.setenv(htd_timm_encoder.CONFIG_ENV, str(config))
    register_plugin(htd_timm_encoder, "timm_encoder")


class TestConfiguredEncoderConformance(EncoderConformance):
    @pytest.fixture(autouse=True)
    def _config(self, config):
        self.config = config

    def make_encoder(self):
        return htd_timm_encoder.encoder_classes(self.config)["tiny_vit"]()


def test_registers_each_table(registered):
    reg = htd_core.get_registry("encoders")
    assert reg.names() == ["tiny_resnet", "tiny_vit"]
    assert reg.entry("tiny_vit").summary == "A one-block ViT-Ti/16 for tests"
    enc = htd_core.create("encoders", "tiny_vit")  # default weights: the file in the TOML
    assert not enc.is_random and enc.mean == (0.7, 0.55, 0.66) and enc.embed_dim == 192
    random = htd_core.create("encoders", "tiny_vit", weights="random")
    images = np.random.default_rng(0).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    assert torch.allclose(enc(images), random(images), atol=1e-5)  # saved from that init
    with pytest.raises(HtdError, match="needs weights"):  # no weights in its table
        htd_core.create("encoders", "tiny_resnet")
    assert htd_core.create("encoders", "tiny_resnet", weights="random").embed_dim == 512


def test_no_config_registers_nothing(monkeypatch, register_plugin, tmp_path):
    monkeypatch.delenv(htd_timm_encoder.CONFIG_ENV, raising=False)
    monkeypatch.setattr(htd_timm_encoder, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    register_plugin(htd_timm_encoder, "timm_encoder")
    assert htd_core.get_registry("encoders").names() == []


def test_bad_config(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text('[encoders.x]\narch = "resnet18"\nweight = "w.pt"\n')
    with pytest.raises(InputError, match=r"unknown keys \['weight'\]"):
        htd_timm_encoder.encoder_classes(bad)
    bad.write_text('[encoders.x]\nweights = "w.pt"\n')
    with pytest.raises(InputError, match="needs arch"):
        htd_timm_encoder.encoder_classes(bad)
    bad.write_text("[encoders.x\n")
    with pytest.raises(InputError, match="invalid TOML"):
        htd_timm_encoder.encoder_classes(bad)
    bad.write_text('[encoders.x]\narch = "no_such_model"\n')
    with pytest.raises(InputError, match="timm cannot build no_such_model"):
        htd_timm_encoder.encoder_classes(bad)["x"](weights="random")
    monkeypatch.setenv(htd_timm_encoder.CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match="does not exist"):
        htd_timm_encoder.config_path()
