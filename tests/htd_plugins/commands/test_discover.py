"""``htd discover``: the four stages through the CLI, resume, shards and bad input."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from htd_core import Encoder, hookimpl
from htd_core.cli import main
from htd_core.images import opaque_id

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
         "--slide-mpp", "0.5", "--workers", "0", "--batch-size", "64", "--no-progress"]  # fmt: skip


@pytest.fixture
def discover(register_plugin):
    """The ``discover`` verb and the tiny encoder in an isolated plugin manager."""
    from htd_plugins.commands import discover as discover_command

    register_plugin(discover_command)
    register_plugin(TinyPlugin(), "tiny-test")


def test_embed_cluster_maps_distill(tmp_path, image, discover, capsys):
    store, phen, maps = tmp_path / "store", tmp_path / "phen", tmp_path / "maps"
    STATE["fail_after"] = 1
    assert main(["discover", "embed", str(image), "--out", str(store), *EMBED]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    STATE["fail_after"] = None
    listing = tmp_path / "slides.txt"
    listing.write_text(f"{image}\nmissing.svs\n")
    assert main(["discover", "embed", str(listing), "--out", str(store), *EMBED]) == 1
    out = capsys.readouterr()
    sid = opaque_id(image)
    n = int(re.search(rf"^{sid}: (\d+) patches \(done\)$", out.out, re.M).group(1))
    assert 200 < n <= 256 and "missing.svs does not exist" in out.err
    assert f"{sid} <- {image.name}\n" in out.err and image.stem not in out.out  # names: stderr
    assert main(["discover", "cluster", "--store", str(store), "--out", str(phen),
                 "--phenotypes", "20", "--levels", "4,8,20", "--no-progress"]) == 0  # fmt: skip
    assert f"20 phenotypes from {n} patches; levels [4, 8, 20]" in capsys.readouterr().out
    assert main(["discover", "maps", "--store", str(store), "--clustering", str(phen),
                 "--out", str(maps), "--no-progress"]) == 0  # fmt: skip
    side = json.loads((maps / "k008" / f"{sid}.json").read_text())
    assert side["grid_shape"] == [16, 16] and side["source"] == "teacher:tiny"
    assert main(["discover", "maps", str(image), "--store", str(store), "--clustering", str(phen),
                 "--out", str(tmp_path / "one"), "--no-progress"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"{sid}: maps at k=[4, 8, 20]")  # by file -> id
    student = tmp_path / "student"
    distill = ["discover", "distill", "--store", str(store), "--clustering", str(phen),
               "--out", str(student), "--input-size", "16", "--epochs", "1", "--arch",
               "vit_tiny_patch16_224", "--depth", "1", "--block", "2", "--no-progress"]  # fmt: skip
    assert main([*distill, str(tmp_path / "other.png")]) == 2  # not the embedded slide
    assert "not among the given slides" in capsys.readouterr().err
    assert main([*distill, str(image)]) == 0
    assert "held-out top-1" in capsys.readouterr().out
    classify = ["discover", "maps", "--classifier", str(student), "--clustering", str(phen),
                "--out", str(tmp_path / "maps2"), "--stride", "16", "--slide-mpp", "0.5",
                "--workers", "0", "--no-progress"]  # fmt: skip
    assert main([*classify, "--store", str(store), str(image)]) == 2
    assert main(classify) == 2 and "pass the slide files" in capsys.readouterr().err
    assert main([*classify, str(image)]) == 0
    assert (tmp_path / "maps2" / "k020" / f"{sid}.png").exists()


def test_bad_inputs_exit_2(tmp_path, image, discover, capsys):
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


def test_no_file_name_or_path_in_any_output(tmp_path, shared_data, discover, capsys):
    """A slide named by a patient barcode: every output names it by its opaque id only."""
    barcode = "TCGA-XX-0000-01A"
    slides = tmp_path / "slides"
    slides.mkdir()
    slide = slides / f"{barcode}.svs"
    shutil.copy(shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs", slide)
    out = tmp_path / "out"
    grid = ["--encoder", "tiny", "--mpp", "16", "--patch-size", "16", "--slide-mpp", "2.0",
            "--workers", "0", "--no-progress"]  # fmt: skip
    embed = ["discover", "embed", str(slides), "--out", str(out / "store"), *grid]
    assert main([*embed, "--workers", "1"]) == 0  # a reader process opens the slide itself
    assert main(["discover", "cluster", "--store", str(out / "store"), "--out", str(out / "phen"),
                 "--phenotypes", "10", "--levels", "3,10", "--no-progress"]) == 0  # fmt: skip
    assert main(["discover", "maps", str(slide), "--store", str(out / "store"), "--clustering",
                 str(out / "phen"), "--out", str(out / "maps"), "--no-progress"]) == 0  # fmt: skip
    assert main(["discover", "distill", str(slide), "--store", str(out / "store"), "--clustering",
                 str(out / "phen"), "--out", str(out / "student"), "--input-size", "16",
                 "--epochs", "1", "--arch", "vit_tiny_patch16_224", "--depth", "1", "--block",
                 "2", "--no-progress"]) == 0  # fmt: skip
    assert main(["discover", "maps", str(slides), "--classifier", str(out / "student"),
                 "--clustering", str(out / "phen"), "--out", str(out / "maps2"), "--slide-mpp",
                 "2.0", "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr()
    sid = opaque_id(slide)
    assert (out / "maps" / "k010" / f"{sid}.png").is_file()
    assert (out / "maps2" / "k003" / f"{sid}.json").is_file()
    links = sorted(f.relative_to(out).as_posix() for f in out.rglob("slide_ids.csv"))
    assert links == ["maps/slide_ids.csv", "maps2/slide_ids.csv", "store/slide_ids.csv"]
    for link in links:  # the one local-only file that names slides: id -> file name
        assert (out / link).read_text() == f"slide_id,file_name\n{sid},{slide.name}\n"
    for k in ("k003", "k010"):  # the pictures of a slide given by file, at every k
        for picture in ("overlay", "gallery"):
            assert (out / "maps" / k / f"{sid}.{picture}.png").is_file()
            assert (out / "maps2" / k / f"{sid}.{picture}.png").is_file()
    files = [f for f in out.rglob("*") if f.is_file() and f.name != "slide_ids.csv"]
    assert len(files) > 20
    for f in files:
        assert barcode not in str(f.relative_to(out)), f
        data = f.read_bytes()
        for secret in (barcode, "TCGA", str(tmp_path)):
            assert secret.encode() not in data, (f, secret)
    assert barcode not in printed.out and str(tmp_path) not in printed.out.replace(str(out), "")
    assert f"{sid} <- {slide.name}" in printed.err  # the link on the terminal (and the csv)
    assert "slide_ids.csv (local only: do not share it)" in printed.err
