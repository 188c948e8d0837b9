"""``htd train`` and ``htd train-vae`` end to end on a tiny model (resumable, clear errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from htd_core.cli import main
from htd_core.testing import synthetic_sample


def write_tiles(root: Path, n: int = 4, size: int = 16) -> Path:
    """A tile folder (images/ + masks/) the ``tiles`` sampler reads."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        s = synthetic_sample(size, seed=i)
        Image.fromarray(s.image).save(root / "images" / f"tile_{i}.png")
        Image.fromarray(s.mask).save(root / "masks" / f"tile_{i}.png")
    return root


def write_config(path: Path, tiles: Path, **fit) -> Path:
    config = {
        "sampler": {"name": "tiles", "root": str(tiles), "classes": ["tumor", "stroma", "normal"]},
        "condition_builders": ["semantic_map"],
        "backbone": {"name": "controlnet_ldm", "preset": "tiny"},
        "generate": {"num_inference_steps": 2},
        "fit": {
            "steps": 2,
            "vae_steps": 2,
            "batch_size": 2,
            "progress": False,
            "checkpoint_every": 1,
            **fit,
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_writes_model_and_resumes(tmp_path, builtin_manager, capsys):
    config = write_config(tmp_path / "pipe.yaml", write_tiles(tmp_path / "tiles"))
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    model = out / "model"
    assert json.loads((model / "htd_config.json").read_text())["backbone"] == "controlnet_ldm"
    saved = yaml.safe_load((model / "pipeline.yaml").read_text())
    assert saved == {
        "backbone": {"name": "controlnet_ldm"},
        "condition_builders": [{"name": "semantic_map"}],
        "generate": {"num_inference_steps": 2},  # the config's generation defaults
    }
    assert list((out / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                str(config),
                "--out",
                str(out),
                "--steps",
                "3",
                "-o",
                "tensorboard=false",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.split("\nmodel:")[0])
    assert summary["start_step"] == 2 and summary["steps"] == 3


def test_train_errors(tmp_path, builtin_manager, capsys):
    tiles = write_tiles(tmp_path / "tiles")
    config = write_config(tmp_path / "pipe.yaml", tiles, tensorboard=False)
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    assert main(["train", str(config), "--out", str(out), "--no-resume"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(out), "-o", "learning_rate=0.1"]) == 2
    assert "learning_rate: 0.001 -> 0.1" in capsys.readouterr().err
    (tmp_path / "nobackbone.yaml").write_text(
        yaml.safe_dump({"sampler": "tiles", "condition_builders": ["semantic_map"]})
    )
    assert main(["train", str(tmp_path / "nobackbone.yaml")]) == 2
    assert "needs a 'backbone' section" in capsys.readouterr().err


def test_train_vae_writes_a_diffusers_autoencoder(tmp_path, capsys):
    from diffusers import AutoencoderKL

    tiles = write_tiles(tmp_path / "tiles", size=20)
    out = tmp_path / "vae"
    args = [
        "train-vae",
        str(tiles),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "2",
    ]
    assert main(args) == 0
    vae = AutoencoderKL.from_pretrained(out)
    report = json.loads(capsys.readouterr().out.split("\nautoencoder:")[0])
    assert vae.config.scaling_factor == pytest.approx(report["scaling_factor"])
    assert np.isfinite(report["reconstruction_mae"]) and report["images"] == 4
    assert report["steps"] == 2 and report["options"]["batch_size"] == 2
    assert not list(tmp_path.glob(".vae.checkpoint.pt"))  # finished: no checkpoint left
    assert main(["train-vae", str(tmp_path / "empty"), "--out", str(out), "--preset", "tiny"]) == 2


def test_train_vae_fine_tunes_taef2s_decoder_with_a_perceptual_term(
    tmp_path, capsys, taef2_weights
):
    from htd_plugins.backbones import load_autoencoder
    from htd_plugins.backbones.ldm.taef2 import TinyAutoencoder

    tiles = write_tiles(tmp_path / "tiles", size=32)
    out = tmp_path / "taef2-tuned"
    args = ["train-vae", str(tiles), "--out", str(out), "--preset", "tiny", "--image-size", "32",
            "--steps", "2", "--batch-size", "2", "--finetune", str(taef2_weights),
            "--perceptual-weight", "1"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.split("\nautoencoder:")[0])
    assert report["options"]["perceptual_weight"] == 1 and report["steps"] == 2
    tuned, original = load_autoencoder(out), load_autoencoder(taef2_weights)
    assert isinstance(tuned, TinyAutoencoder) and tuned.factor == 8
    enc = [torch.equal(a, b) for a, b in zip(tuned.module.encoder.state_dict().values(),
           original.module.encoder.state_dict().values(), strict=True)]  # fmt: skip
    dec = [torch.equal(a, b) for a, b in zip(tuned.module.decoder.state_dict().values(),
           original.module.decoder.state_dict().values(), strict=True)]  # fmt: skip
    assert all(enc) and not all(dec)  # the decoder moved, the encoder did not


def _train_args(*argv: str):
    from htd_core.cli import build_parser

    return build_parser().parse_args(["train", "cfg.yaml", *argv])


def test_train_options_go_to_their_component(builtin_manager, tmp_path, monkeypatch):
    """-o KEY: the backbone's option when it takes KEY, else fit's; PART.KEY for a section;
    --preset / --device are backbone options; a file's vae_max_minutes that leaves nothing of
    a smaller --max-minutes is dropped with a note (examples/pipeline.yaml: 3 of 20). The file
    is only read (its ``${HTD_SHARED_DATA}`` resolved to an empty folder): no data needed."""
    monkeypatch.setenv("HTD_SHARED_DATA", str(tmp_path))
    from htd_core.config import load_config
    from htd_core.errors import ConfigError
    from htd_plugins.commands.train import apply_options

    example = Path(__file__).resolve().parents[3] / "examples" / "pipeline.yaml"
    data, label = load_config(example)
    args = _train_args("-o", "preset=tiny", "-o", "batch_size=4", "-o", "fit.seed=3",
                       "-o", "sampler.patch_size=32", "--max-minutes", "2", "--no-progress")  # fmt: skip
    fit, notes = apply_options(data, args, label)
    assert data["backbone"]["preset"] == "tiny" and data["sampler"]["patch_size"] == 32
    assert fit["batch_size"] == 4 and fit["seed"] == 3 and fit["progress"] is False
    assert fit["max_minutes"] == 2 and "vae_max_minutes" not in fit
    assert notes == [f"fit.vae_max_minutes 3 of {label} leaves nothing of --max-minutes 2: the "
                     "autoencoder gets its default share (20 %) instead"]  # fmt: skip
    data, _ = load_config(example)
    fit, notes = apply_options(data, _train_args("--preset", "tiny", "--max-minutes", "10"), label)
    assert data["backbone"]["preset"] == "tiny" and fit["vae_max_minutes"] == 3 and notes == []
    with pytest.raises(ConfigError, match=r"-o model.x=\.\.\.: write KEY, backbone.KEY"):
        apply_options(load_config(example)[0], _train_args("-o", "model.x=1"), label)


def test_train_preset_from_the_command_line(tmp_path, builtin_manager, capsys):
    config = write_config(
        tmp_path / "pipe.yaml", write_tiles(tmp_path / "tiles"), tensorboard=False
    )
    text = config.read_text().replace("preset: tiny", "preset: paper")
    config.write_text(text)  # the file asks for the paper size; the command line overrides it
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "-o", "preset=tiny"]) == 0
    saved = json.loads((out / "model" / "htd_config.json").read_text())
    assert saved["options"]["preset"] == "tiny"
