from __future__ import annotations

import numpy as np
import pytest
import torch

from htd_core.errors import InputError
from htd_core.types import ClassMap, Condition, TissueSample, collate_conditions


def test_classmap_validation_and_roundtrip():
    cm = ClassMap(("tumor", "stroma"))
    assert len(cm.colors) == 2 and cm.index("stroma") == 1
    assert ClassMap.from_dict(cm.to_dict()) == cm
    with pytest.raises(InputError, match="ClassMap.names names class 'a' twice"):
        ClassMap(("a", "a"))
    with pytest.raises(InputError, match="collides"):
        ClassMap(("a", "b"), ignore_index=1)
    with pytest.raises(InputError, match="one RGB triple per class"):
        ClassMap(("a", "b"), colors=((1, 2, 3),))
    with pytest.raises(InputError, match="unknown class 'fat'"):
        cm.index("fat")


def test_check_mask_names_bad_codes():
    cm = ClassMap(("a", "b"))
    cm.check_mask(np.array([[0, 1, 255]]))
    with pytest.raises(InputError, match=r"\[7\]"):
        cm.check_mask(np.array([[0, 7]]))


def test_sample_validation_and_composition():
    cm = ClassMap(("a", "b"))
    mask = np.array([[0, 0, 1, 255]], np.uint8)
    s = TissueSample(np.zeros((1, 4, 3), np.uint8), mask, cm)
    assert s.composition() == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    layout = TissueSample(None, mask, cm)
    assert layout.size == (1, 4)
    with pytest.raises(InputError, match="uint8"):
        TissueSample(np.zeros((1, 4, 3), np.float32), mask, cm)
    with pytest.raises(InputError, match="does not match"):
        TissueSample(np.zeros((2, 4, 3), np.uint8), mask, cm)


def test_condition_concatenates_channels_and_tokens():
    a = Condition(torch.zeros(2, 4, 4), torch.zeros(1, 8), ("map:a", "map:b"), ("t:a",))
    b = Condition(torch.ones(1, 4, 4), None, ("edge",))
    c = a + b + Condition()
    assert c.channels == ("map:a", "map:b", "edge")
    assert c.spatial.shape == (3, 4, 4) and c.tokens.shape == (1, 8)
    assert torch.equal(c.select("edge"), torch.ones(1, 4, 4))
    assert Condition().is_null and not c.is_null
    with pytest.raises(InputError, match="different sizes"):
        a + Condition(torch.zeros(1, 5, 5), None, ("x",))
    with pytest.raises(InputError, match="channel names"):
        Condition(torch.zeros(2, 4, 4), None, ("only_one",))


def test_collate_requires_same_channels():
    a = Condition(torch.zeros(1, 2, 2), None, ("x",))
    spatial, tokens = collate_conditions([a, a])
    assert spatial.shape == (2, 1, 2, 2) and tokens is None
    with pytest.raises(InputError, match="one builder"):
        collate_conditions([a, Condition(torch.zeros(1, 2, 2), None, ("y",))])


def test_condition_meta_merges_provenance_per_class():
    """Provenance travels inside the condition; ``+`` merges it (right side wins per key)."""
    a = Condition(
        spatial=torch.zeros(1, 2, 2),
        channels=["map:a"],
        meta={"crop_provenance": {"a": {"x": 1}}, "k": 1},
    )
    b = Condition(tokens=torch.zeros(1, 3), meta={"crop_provenance": {"b": {"x": 2}}, "k": 2})
    both = a + b
    assert both.meta == {"crop_provenance": {"a": {"x": 1}, "b": {"x": 2}}, "k": 2}
    assert (Condition() + a).meta == a.meta and Condition().meta == {}
    same_class = a + Condition(meta={"crop_provenance": {"a": {"x": 9}}})
    assert same_class.meta["crop_provenance"] == {"a": {"x": 9}}
    assert a.meta == {"crop_provenance": {"a": {"x": 1}}, "k": 1}  # operands unchanged
