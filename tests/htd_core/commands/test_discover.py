"""``htd discover``: the four stages through the CLI, resume, shards and bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch

from htd_core import Encoder, hookimpl
from htd_core.cli import main

STATE = {"fail_after": None}


class TinyEncoder(Encoder):
    """Fixed random convolutions + mean/std pooling (random weights, labelled)."""

    name, embed_dim, input_size, weights_id = "tiny", 16, 32, "random"

    def __init__(self) -> None:
        self.weight = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        self.fail_after, self.calls = STATE["fail_after"], 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        h = torch.relu(torch.nn.functional.conv2d(pixels, self.weight, padding=1))
        return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


class TinyPlugin:
    @hookimpl
    def htd_register_encoders(self, registry) -> None:
        registry.register("tiny", TinyEncoder)


@pytest.fixture
def image():
    from htd_plugins.discovery import tiatoolbox_sample_image

    return tiatoolbox_sample_image()


EMBED = ["--encoder", "tiny", "--mpp", "2", "--patch-size", "32", "--stride", "16",
         "--slide-mpp", "0.5", "--workers", "0", "--batch-size", "64", "--quiet"]  # fmt: skip


def test_embed_cluster_maps_distill(tmp_path, image, register_plugin, capsys):
    register_plugin(TinyPlugin(), "tiny-test")
    store, phen, maps = tmp_path / "store", tmp_path / "phen", tmp_path / "maps"
    STATE["fail_after"] = 1
    assert main(["discover", "embed", str(image), "--out", str(store), *EMBED]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    STATE["fail_after"] = None
    listing = tmp_path / "slides.txt"
    listing.write_text(f"{image}\nmissing.svs\n")
    assert main(["discover", "embed", str(listing), "--out", str(store), *EMBED]) == 1
    out = capsys.readouterr()
    n = int(re.search(rf"{image.stem}: (\d+) patches \(done\)", out.out).group(1))
    assert 200 < n <= 256 and "missing.svs does not exist" in out.err
    assert main(["discover", "cluster", "--store", str(store), "--out", str(phen),
                 "--phenotypes", "20", "--levels", "4,8,20", "--quiet"]) == 0  # fmt: skip
    assert f"20 phenotypes from {n} patches; levels [4, 8, 20]" in capsys.readouterr().out
    assert main(["discover", "maps", "--store", str(store), "--clustering", str(phen),
                 "--out", str(maps), "--quiet"]) == 0  # fmt: skip
    side = json.loads((maps / "k008" / f"{image.stem}.json").read_text())
    assert side["grid_shape"] == [16, 16] and side["source"] == "teacher:tiny"
    student = tmp_path / "student"
    assert main(["discover", "distill", "--store", str(store), "--clustering", str(phen),
                 "--out", str(student), "--input-size", "16", "--epochs", "1", "--arch",
                 "vit_tiny_patch16_224", "--depth", "1", "--block", "2", "--quiet"]) == 0  # fmt: skip
    assert "held-out top-1" in capsys.readouterr().out
    assert main(["discover", "maps", "--classifier", str(student), "--clustering", str(phen),
                 "--out", str(tmp_path / "maps2"), "--store", str(store), "--stride", "16",
                 "--slide-mpp", "0.5", "--workers", "0", "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "maps2" / "k020" / f"{image.stem}.png").exists()


def test_bad_inputs_exit_2(tmp_path, image, register_plugin, capsys):
    register_plugin(TinyPlugin(), "tiny-test")
    store = tmp_path / "store"
    assert (
        main(["discover", "embed", str(image), "--out", str(store), "--shard", "2/2", *EMBED]) == 2
    )
    assert "shard 2/2" in capsys.readouterr().err
    assert main(["discover", "embed", str(image), "--out", str(store), *EMBED]) == 0
    other = [a if a != "32" else "48" for a in EMBED]
    assert main(["discover", "embed", str(image), "--out", str(store), *other]) == 2
    assert "patch_size=32" in capsys.readouterr().err
    assert main(["discover", "cluster", "--store", str(store), "--out", str(tmp_path / "p"),
                 "--levels", "5,x"]) == 2  # fmt: skip
    assert main(["discover", "maps", "--clustering", str(tmp_path), "--out", str(tmp_path / "m"),
                 "--store", str(store)]) == 2  # fmt: skip
    assert "holds no clustering" in capsys.readouterr().err
