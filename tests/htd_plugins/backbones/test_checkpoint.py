"""Atomic model folders and checkpoint bookkeeping; presets' geometry."""

from __future__ import annotations

import pytest

from htd_core.errors import InputError
from htd_core.io import atomic_write_folder as write_model_folder
from htd_plugins.backbones.ldm.checkpoint import config_diff, list_checkpoints, save_checkpoint
from htd_plugins.backbones.ldm.presets import PRESETS


def test_config_diff_names_keys():
    assert config_diff({"a": 1, "b": [1, 2]}, {"a": 1, "b": (1, 2)}) == []
    assert config_diff({"a": 1, "c": 3}, {"a": 2}, ignore=["c"]) == ["a: 1 -> 2"]
    assert config_diff({}, {"x": 1}) == ["x: '<absent>' -> 1"]


def test_failed_write_keeps_previous_folder(tmp_path):
    target = tmp_path / "model"
    write_model_folder(target, lambda d: (d / "ok.txt").write_text("v1"))

    def broken(d):
        (d / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_model_folder(target, broken)
    assert sorted(p.name for p in target.iterdir()) == ["htd-output.json", "ok.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folder left


def test_only_the_last_checkpoints_are_kept(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002.pt", "step-00000003.pt"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_condition_embedding_matches_autoencoder_factor(name):
    preset = PRESETS[name]
    assert 2 ** (len(preset.conditioning_embedding_out_channels) - 1) == preset.vae_factor
    assert preset.image_size % preset.size_multiple == 0
    assert preset.unet["down_block_types"][-1] == "CrossAttnDownBlock2D"


def test_read_model_config_refuses_non_model(tmp_path):
    from htd_plugins.backbones.ldm.model_folder import read_model_config

    with pytest.raises(InputError, match="not an htd model folder"):
        read_model_config(tmp_path)
