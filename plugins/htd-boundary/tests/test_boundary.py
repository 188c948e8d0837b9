from __future__ import annotations

import htd_boundary
import numpy as np
import pytest

import htd_core
from htd_core.errors import InputError
from htd_core.testing import ConditionBuilderConformance, real_tiles
from htd_core.types import ClassMap, TissueSample


class TestBoundaryConformance(ConditionBuilderConformance):
    def make_builder(self):
        return htd_boundary.BoundaryBuilder(max_distance=8)


def test_interface_distance():
    mask = np.zeros((5, 10), np.uint8)
    mask[:, 5:] = 1
    cond = htd_boundary.BoundaryBuilder(max_distance=4).build(
        TissueSample(None, mask, ClassMap(("a", "b")))
    )
    row = cond.spatial[0, 2].numpy()
    assert row[4] == row[5] == 1.0  # both sides of the interface
    np.testing.assert_allclose(row[:5], [0.0, 0.25, 0.5, 0.75, 1.0])
    one_class = TissueSample(None, np.zeros((4, 4), np.uint8), ClassMap(("a", "b")))
    assert htd_boundary.BoundaryBuilder().build(one_class).spatial.sum() == 0


def test_ignored_pixels_are_not_interfaces():
    mask = np.zeros((4, 6), np.uint8)
    mask[:, 3:] = 255
    cond = htd_boundary.BoundaryBuilder().build(TissueSample(None, mask, ClassMap(("a", "b"))))
    assert cond.spatial.sum() == 0


def test_bad_option():
    with pytest.raises(InputError, match="max_distance"):
        htd_boundary.BoundaryBuilder(max_distance=0)


def test_registers_and_composes(builtin_manager):
    if "boundary" not in builtin_manager.condition_builders:  # not pip-installed here
        builtin_manager.register(htd_boundary, "boundary")
    builder = htd_core.create("condition_builders", "semantic_map") + htd_core.create(
        "condition_builders", "boundary"
    )
    assert builder.channels(ClassMap(("a", "b"))) == ("map:a", "map:b", "boundary")


def test_real_gland_interfaces(shared_data):
    for sample in real_tiles(shared_data, "glas", n=4):
        value = htd_boundary.BoundaryBuilder(max_distance=4).build(sample).spatial[0].numpy()
        m = sample.mask
        changes = m[:, 1:] != m[:, :-1]
        assert (value[:, 1:][changes] == 1.0).all()  # every gland-stroma edge marked
        assert value.max() <= 1.0 and value.min() >= 0.0
