from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.testing import ConditionBuilderConformance, real_tiles, synthetic_sample
from htd_core.types import ClassMap, TissueSample
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder, one_hot


class TestSemanticMapConformance(ConditionBuilderConformance):
    def make_builder(self):
        return SemanticMapBuilder()


def test_one_hot_and_ignore_index():
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    cond = SemanticMapBuilder().build(TissueSample(None, mask, ClassMap(("a", "b", "c"))))
    assert cond.channels == ("map:a", "map:b", "map:c")
    assert torch.equal(cond.spatial.argmax(0)[:1], torch.tensor([[0, 1]]))
    assert cond.spatial[:, 1, 1].sum() == 0  # ignored pixel: all-zero
    assert torch.equal(one_hot(mask, 3).sum(0), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))


def test_class_count_mismatch_is_refused():
    builder = SemanticMapBuilder(classes=["tumor", "stroma"])
    with pytest.raises(InputError, match="configured for 2 classes"):
        builder.build(synthetic_sample(8))


def test_real_masks(shared_data):
    for sample in real_tiles(shared_data, "wsss4luad_val", n=3):
        cond = SemanticMapBuilder().build(sample)
        assert np.array_equal(cond.spatial.argmax(0).numpy(), sample.mask)
        assert cond.spatial.sum(0).eq(1).all()  # every pixel labelled exactly once
