from __future__ import annotations

import pytest

from htd_core.errors import (
    ComponentOptionError,
    DuplicateComponentError,
    RegistryError,
    UnknownComponentError,
)
from htd_core.interfaces import ConditionBuilder
from htd_core.registry import Registry
from htd_core.types import Condition


class Dummy(ConditionBuilder):
    """A dummy builder."""

    def __init__(self, width: int = 1) -> None:
        self.width = width

    def channels(self, class_map):
        return ()

    def build(self, sample, *, seed=None):
        return Condition()


def make() -> Registry[ConditionBuilder]:
    return Registry("condition builder", ConditionBuilder)


def test_register_create_and_glob():
    reg = make()
    reg.register("dummy_a", Dummy)
    reg.register("dummy_b", lambda: Dummy(2))
    reg.register("other", Dummy)
    assert reg.names() == ["dummy_a", "dummy_b", "other"]
    assert reg.names("dummy_*") == ["dummy_a", "dummy_b"]
    assert reg.create("dummy_a", width=3).width == 3
    assert reg.create("dummy_b").width == 2
    assert reg.entry("dummy_a").summary == "A dummy builder."


def test_type_is_checked_at_registration_and_creation():
    reg = make()
    with pytest.raises(RegistryError, match="not a subclass of ConditionBuilder"):
        reg.register("bad", int)
    with pytest.raises(RegistryError, match="expected a ConditionBuilder subclass"):
        reg.register("bad", 42)
    with pytest.raises(RegistryError, match="invalid"):
        reg.register("bad name!", Dummy)
    reg.register("liar", lambda: "not a builder")
    with pytest.raises(RegistryError, match="returned str, not a ConditionBuilder"):
        reg.create("liar")


def test_duplicate_names_both_plugins():
    reg = make()
    with reg.owned_by("first_plugin"):
        reg.register("dup", Dummy)
    with reg.owned_by("second_plugin"), pytest.raises(DuplicateComponentError) as err:
        reg.register("dup", Dummy)
    assert "first_plugin" in str(err.value) and "second_plugin" in str(err.value)


def test_unknown_name_lists_and_suggests():
    reg = make()
    reg.register("semantic_map", Dummy)
    reg.register("crop", Dummy)
    with pytest.raises(UnknownComponentError) as err:
        reg.create("semantik_map")
    msg = str(err.value)
    assert "Did you mean 'semantic_map'?" in msg
    assert "crop, semantic_map" in msg


def test_unknown_option_suggests():
    reg = make()
    reg.register("dummy", Dummy)
    with pytest.raises(ComponentOptionError, match="no option 'widht'. Did you mean 'width'"):
        reg.create("dummy", widht=2)


def test_unregister_plugin_rolls_back():
    reg = make()
    with reg.owned_by("p"):
        reg.register("a", Dummy)
        reg.register("b", Dummy)
    assert sorted(reg.unregister_plugin("p")) == ["a", "b"]
    assert len(reg) == 0


def test_component_errors_keep_their_type():
    from htd_core.errors import InputError

    def refuse(weights=None):
        raise InputError("pass weights=PATH")

    reg = make()
    reg.register("needs_weights", refuse)
    with pytest.raises(InputError, match="weights=PATH"):
        reg.create("needs_weights")
    reg.register("plain_value_error", lambda size=1: Dummy(int("x")))
    with pytest.raises(ComponentOptionError, match="plain_value_error"):
        reg.create("plain_value_error")
