"""Options as frozen dataclasses shared by the constructors that take them, and the one preset
helper (``name + overrides -> preset``)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from htd_core.errors import InputError
from htd_core.options import make_options, override, preset
from htd_core.registry import accepted_options


@dataclasses.dataclass(frozen=True)
class Size:
    name: str = "s"
    side: int = 8
    depth: int = 1

    def __post_init__(self) -> None:
        if self.side < 1:
            raise InputError(f"side={self.side} must be >= 1")


SIZES = {"small": Size("small", 8), "large": Size("large", 64, 3)}


def test_the_preset_helper_names_presets_and_fields_and_validates_overrides():
    assert preset(SIZES, "large") is SIZES["large"]
    assert preset(SIZES, "small", {"depth": 2}) == Size("small", 8, 2)
    with pytest.raises(
        InputError,
        match=r"unknown size 'smal'\. Did you mean 'small'\? Choose one of: small, large",
    ):
        preset(SIZES, "smal", what="size")
    with pytest.raises(
        InputError,
        match=r"size 'small' has no option 'sid'\. Did you mean 'side'\? Options: side, depth",
    ):
        preset(SIZES, "small", {"sid": 3}, what="size")
    with pytest.raises(InputError, match="side=0 must be >= 1"):  # replace() validates again
        override(SIZES["small"], {"side": 0}, "size")


def test_make_options_refuses_unknown_and_moved_keys():
    assert make_options(Size, {"side": 4}, "thing") == Size(side=4)
    with pytest.raises(InputError, match="thing has no option 'colour'"):
        make_options(Size, {"colour": 1}, "thing")
    with pytest.raises(InputError, match="'scale' is no longer an option here: use side"):
        make_options(Size, {"scale": 1}, "thing", moved={"scale": "use side"})


def test_backbones_share_one_options_declaration():
    """controlnet_ldm and concat_ldm take the same LatentDiffusionOptions (controlnet_ldm adds
    zero_init); no constructor restates the list, and the registry reads it from the class."""
    from htd_plugins.backbones.concat_ldm import ConcatLDM
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.backbones.ldm.options import LatentDiffusionOptions

    shared = [f.name for f in dataclasses.fields(LatentDiffusionOptions)]
    assert accepted_options(ConcatLDM) == shared
    assert accepted_options(ControlNetLDM) == [*shared, "zero_init"]
    assert issubclass(ControlNetLDM.Options, LatentDiffusionOptions)
    for cls in (ConcatLDM, ControlNetLDM):
        assert "__init__" not in vars(cls)  # the base constructor takes the options whole
    params = inspect.signature(ConcatLDM.__init__).parameters
    assert list(params) == ["self", "options", "overrides"]
    backbone = ControlNetLDM(LatentDiffusionOptions(preset="tiny"), zero_init=True)
    assert backbone.config.preset == "tiny" and backbone.config.zero_init is True
    with pytest.raises(
        InputError, match="'vae' is no longer an option here: it is called `autoencoder`"
    ):
        ConcatLDM(vae="some/folder")
    with pytest.raises(InputError, match="condition_dropout=1.5 must be in"):
        ConcatLDM(condition_dropout=1.5)
