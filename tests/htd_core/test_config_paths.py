"""Pipeline YAML paths work from any folder: ${VARS}, and ./ ../ relative to the file."""

from __future__ import annotations

import os

import pytest

from htd_core.config import load_config, parse_options
from htd_core.errors import ConfigError

YAML = """
sampler: {name: tiles, root: ../data/glas, classes: [a, b]}
condition_builders: [semantic_map, {name: crop, bank: ./bank.safetensors}]
backbone: {name: controlnet_ldm, autoencoder: "${MY_VAE}/vae"}
fit: {output_dir: runs/x}
"""


def test_paths_resolve_against_the_file_not_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "p.yaml"
    config.write_text(YAML)
    monkeypatch.setenv("MY_VAE", "/models")
    monkeypatch.chdir(tmp_path / "configs")  # anywhere but the file's parent's parent
    data, _ = load_config(config)
    assert data["sampler"]["root"] == os.path.normpath(tmp_path / "data" / "glas")
    assert data["condition_builders"][1]["bank"] == str(tmp_path / "configs" / "bank.safetensors")
    assert data["condition_builders"][0] == "semantic_map"
    assert data["backbone"]["autoencoder"] == "/models/vae"
    assert data["fit"]["output_dir"] == "runs/x"  # outputs stay relative to the current folder


def test_shared_data_variable_defaults_to_the_data_folder(tmp_path, monkeypatch):
    config = tmp_path / "p.yaml"
    config.write_text("sampler:\n  name: tiles\n  root: ${HTD_SHARED_DATA}/glas\n")
    monkeypatch.setenv("HTD_SHARED_DATA", str(tmp_path / "shared"))
    assert load_config(config)[0]["sampler"]["root"] == f"{tmp_path}/shared/glas"
    monkeypatch.setenv("HTD_SHARED_DATA", "")
    monkeypatch.setattr("htd_core.data.shared_data_dir", lambda required=False: None)
    with pytest.raises(ConfigError, match="HTD_SHARED_DATA"):
        load_config(config)


def test_unset_variable_is_named(tmp_path, monkeypatch):
    config = tmp_path / "p.yaml"
    config.write_text("backbone:\n  name: controlnet_ldm\n  autoencoder: ${NOT_SET_ANYWHERE_13}\n")
    monkeypatch.delenv("NOT_SET_ANYWHERE_13", raising=False)
    with pytest.raises(ConfigError, match=r"p.yaml: backbone.autoencoder: .*NOT_SET_ANYWHERE_13"):
        load_config(config)


def test_sampler_option_files_resolve_too(tmp_path, monkeypatch):
    (tmp_path / "opts.yaml").write_text("root: ./tiles\n")
    monkeypatch.chdir("/")
    assert parse_options([], str(tmp_path / "opts.yaml"))["root"] == str(tmp_path / "tiles")
