"""``htd evaluate``: report files, resume, set layouts and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from htd_core import Evaluator, hookimpl
from htd_core.cli import main
from htd_core.dataset import DatasetWriter
from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_core.interfaces import Encoder
from htd_core.io import atomic_save_image, atomic_write_text
from htd_core.testing import real_tiles
from htd_core.types import TissueSample
from htd_plugins.evaluation import open_set


class PooledEncoder(Encoder):
    """A tiny deterministic encoder: 4x4 average-pooled pixels (48-d)."""

    name = "pooled"
    embed_dim = 48
    input_size = 16
    weights_id = "pooled-v1"

    def __init__(self, device: str = "cpu") -> None:
        self.images_seen = 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        PooledEncoder.seen = getattr(PooledEncoder, "seen", 0) + pixels.shape[0]
        return F.adaptive_avg_pool2d(pixels, 4).flatten(1)


class TestPlugin:
    @hookimpl
    def htd_register_encoders(self, registry):
        registry.register("pooled", PooledEncoder)


@pytest.fixture
def plugins(register_plugin) -> None:
    """Evaluators, the tiles sampler and the tiny encoder, registered by hand."""
    from htd_plugins.commands import evaluate as evaluate_command
    from htd_plugins.evaluators import deeplabv3plus, frechet, privacy
    from htd_plugins.samplers import tiles

    for module in (frechet, deeplabv3plus, privacy, tiles, evaluate_command):
        register_plugin(module)
    register_plugin(TestPlugin(), "test-encoders")


def _dataset(root: Path, samples, extra: tuple[str, ...] = ()) -> Path:
    with DatasetWriter(root, samples[0].class_map, extra_columns=extra) as writer:
        for s in samples:
            writer.write(s)
    return root


def _with_crops(samples):
    """Samples as `htd generate` records them: where each class's real crop was placed."""
    prov = {
        "gland": {
            "slide_id": "x",
            "x": 0,
            "y": 0,
            "size": 64,
            "placed_x": 20,
            "placed_y": 30,
            "placed_size": 64,
        }
    }
    return [
        TissueSample(s.image, s.mask, s.class_map, {**s.meta, "crop_provenance": prov})
        for s in samples
    ]


@pytest.fixture(scope="module")
def glas(shared_data):
    return real_tiles(shared_data, "glas", n=24)  # six source images


def test_report_with_all_evaluators_and_resume(plugins, glas, tmp_path, capsys) -> None:
    real = _dataset(tmp_path / "real", glas[:12])
    test = _dataset(tmp_path / "test", glas[12:16])
    syn_a = _dataset(tmp_path / "dual", _with_crops(glas[16:20]), ("crop_provenance",))
    syn_b = _dataset(tmp_path / "uncond", glas[20:24])
    out = tmp_path / "out"
    argv = [
        "evaluate", "--real", str(real), "--real-test", str(test),
        "--synthetic", f"dual={syn_a}", "--synthetic", str(syn_b),
        "--evaluators", "frechet,deeplabv3plus,privacy", "--encoders", "pooled", "--out", str(out),
        "-o", "deeplabv3plus.budget=tiny", "-o", "privacy.pixel_size=16",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())["results"]
    assert set(metrics["frechet"]) == {"dual", "uncond"}
    fd = metrics["frechet"]["dual"]["encoders"]["pooled"]
    assert fd["n_real"] == 4 and fd["reference"] == "held-out real"  # the held-out set only
    assert fd["n_real_train"] == 4  # real vs real, at the synthetic set's N
    dl = metrics["deeplabv3plus"]["dual"]
    assert dl["n_test"] == 4 and dl["settings"]["real"]["n_train"] == 12
    assert metrics["privacy"]["uncond"]["n_real_held_out"] == 4
    assert metrics["privacy"]["dual"]["n_with_crop_boxes"] == 4
    assert metrics["privacy"]["dual"]["pixel"]["image"]["masked"] is not None
    assert metrics["privacy"]["uncond"]["pixel"]["image"]["masked"] is None
    report = (out / "report.md").read_text()
    for heading in (
        "## Frechet distance",
        "## Downstream segmentation",
        "## Privacy audit",
        "## Examples",
    ):
        assert heading in report
    for png in ("examples.png", "fd.png", "privacy-dual/privacy_top_pairs.png"):
        assert (out / "figures" / png).stat().st_size > 1000
    assert (out / "cache" / "real-features-pooled.npz").is_file()

    PooledEncoder.seen = 0
    (out / "metrics.json").unlink()
    assert main(argv) == 0  # every (evaluator, set) result is reused from partial/
    assert PooledEncoder.seen == 0
    assert json.loads((out / "metrics.json").read_text())["results"] == metrics


def test_tile_folder_with_globs_as_real_and_synthetic(plugins, shared_data, tmp_path) -> None:
    out = tmp_path / "out"
    glas = str(shared_data / "glas")
    code = main([
        "evaluate", "--real", glas, "--match-real", "train_*",
        "--real-test", glas, "--match-real-test", "testB_*",
        "--synthetic", f"test={glas}", "--match-synthetic", "test=testA_*",
        "--limit", "6", "--encoders", "pooled", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["n_real"] == 6 and m["inputs"]["n_real_test"] == 6
    assert m["results"]["frechet"]["test"]["encoders"]["pooled"]["n_real"] == 6  # held out
    assert "matching `testA_*`" in (out / "report.md").read_text()
    tiles = open_set(shared_data / "glas", match="testA_1_*")
    assert len(tiles) == 4 and tiles[0].class_map.names == ("non_gland", "gland")
    assert len({s.meta["slide_id"] for s in tiles}) == 1  # four tiles, one source image


def test_synthetic_without_masks_is_refused_by_deeplab(plugins, glas, tmp_path, capsys) -> None:
    real = _dataset(tmp_path / "real", glas[:8])
    images = tmp_path / "generated" / "images"
    for i, s in enumerate(glas[8:12]):
        atomic_save_image(images / f"{i}.png", s.image)
    argv = [
        "evaluate",
        "--real",
        str(real),
        "--synthetic",
        str(images.parent),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--evaluators", "deeplabv3plus", "-o", "deeplabv3plus.budget=tiny"]) == 2
    assert "synthetic set has no masks" in capsys.readouterr().err
    assert (
        main([*argv, "--evaluators", "frechet", "--encoders", "pooled"]) == 0
    )  # FD needs no masks


def test_bad_input_exits_2_with_a_message(plugins, glas, tmp_path, capsys) -> None:
    real = _dataset(tmp_path / "real", glas[:4])
    empty = tmp_path / "empty"
    DatasetWriter(empty, glas[0].class_map).close()
    cases = [
        (["--synthetic", str(empty)], "is empty"),
        (["--synthetic", str(tmp_path / "missing")], "does not exist"),
        ([], "at least one --synthetic"),
        (["--synthetic", str(real), "--evaluators", "frechet,fid"], "unknown evaluator 'fid'"),
        (["--synthetic", str(real), "-o", "budget=tiny"], "EVALUATOR.KEY=VALUE"),
        (["--synthetic", f"a={real}", "--synthetic", f"a={real}"], "used twice"),
    ]
    for extra, message in cases:
        assert main(["evaluate", "--real", str(real), "--out", str(tmp_path / "o"), *extra]) == 2
        assert message in capsys.readouterr().err, extra
    (tmp_path / "flat").mkdir()
    with pytest.raises(InputError, match="neither an htd dataset"):
        open_set(tmp_path / "flat")


def test_mixed_image_sizes_are_accepted(plugins, shared_data, tmp_path) -> None:
    glas = real_tiles(shared_data, "glas", n=6)
    camelyon = real_tiles(shared_data, "camelyon_mini", n=6)  # 512 px against 224 px
    out = tmp_path / "out"
    real, syn = _dataset(tmp_path / "r", glas), _dataset(tmp_path / "s", camelyon)
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(real),
                "--synthetic",
                str(syn),
                "--encoders",
                "pooled",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    notes = json.loads((out / "metrics.json").read_text())["results"]["frechet"]["s"]["warnings"]
    assert any("resized to 16x16" in n for n in notes)
    assert np.isfinite(
        json.loads((out / "metrics.json").read_text())["results"]["frechet"]["s"]["encoders"][
            "pooled"
        ]["fd"]
    )


class MeanBrightness(Evaluator):
    """Mean pixel brightness of real and synthetic images, and their difference."""

    name = "mine"

    def __init__(self, scale: float = 1.0, output_dir: str | None = None) -> None:
        self.scale, self.output_dir = scale, output_dir
        self.reset()

    def reset(self) -> None:
        self.sums = {"real": [0.0, 0], "synthetic": [0.0, 0]}

    def update(self, *, real=None, synthetic=None) -> None:
        for what, samples in (("real", real), ("synthetic", synthetic)):
            for s in samples or ():
                self.sums[what][0] += float(s.image.mean())
                self.sums[what][1] += 1

    def aggregate(self) -> dict:
        real, syn = (self.sums[k][0] / max(self.sums[k][1], 1) for k in ("real", "synthetic"))
        if self.output_dir is not None:
            atomic_write_text(Path(self.output_dir) / "gap.txt", f"{syn - real}\n")
        return {"brightness": {"real": real, "synthetic": syn}, "gap": self.scale * (syn - real)}


class MinePlugin:
    @hookimpl
    def htd_register_evaluators(self, registry):
        registry.register("mine", MeanBrightness)


def test_third_party_evaluator_is_first_class(register_plugin, glas, tmp_path, capsys) -> None:
    """A plugin's evaluator gets its metrics into metrics.json and a section into report.md
    (the default table), with the run-wide settings its constructor declares."""
    from htd_plugins.commands import evaluate as evaluate_command

    register_plugin(evaluate_command)
    register_plugin(MinePlugin(), "test-mine")
    real, syn = _dataset(tmp_path / "real", glas[:4]), _dataset(tmp_path / "syn", glas[4:8])
    out = tmp_path / "out"
    argv = [
        "evaluate", "--real", str(real), "--synthetic", f"a={syn}", "--synthetic", f"b={real}",
        "--evaluators", "mine", "-o", "mine.scale=2", "--device", "meta", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads((out / "metrics.json").read_text())
    metrics = doc["results"]["mine"]
    expected = 2 * (
        np.mean([s.image.mean() for s in glas[4:8]]) - metrics["a"]["brightness"]["real"]
    )
    assert metrics["a"]["gap"] == pytest.approx(expected)
    assert metrics["b"]["gap"] == pytest.approx(0.0)
    # the run-wide settings its constructor takes: an output folder per set, no device
    assert doc["inputs"]["options"]["mine"] == {"scale": 2}
    assert float((out / "figures" / "mine-b" / "gap.txt").read_text()) == pytest.approx(0.0)
    report = (out / "report.md").read_text()
    section = report[report.index("## mine") :]
    assert "Mean pixel brightness of real and synthetic images" in section
    assert "| metric | a | b |" in section
    gap_row = next(line for line in section.splitlines() if line.startswith("| gap |"))
    assert f"{metrics['a']['gap']:.4g}" in gap_row
    assert "| brightness.synthetic |" in section


def test_no_evaluators_named_runs_those_marked_default(plugins, glas, tmp_path) -> None:
    real = _dataset(tmp_path / "real", glas[:6])
    out = tmp_path / "out"
    argv = ["evaluate", "--real", str(real), "--synthetic", str(real), "--encoders", "pooled"]
    assert main([*argv, "--out", str(out)]) == 0
    assert list(json.loads((out / "metrics.json").read_text())["results"]) == ["frechet"]


def test_image_folders_get_opaque_ids_by_source_image(glas, tmp_path) -> None:
    images = tmp_path / "set" / "images"
    names = ["TCGA-AB-1234_r0_c0.png", "TCGA-AB-1234_r0_c1.png", "TCGA-CD-5678.png"]
    for name, s in zip(names, glas, strict=False):
        atomic_save_image(images / name, s.image)
    samples = list(open_set(tmp_path / "set"))
    ids = [s.meta["slide_id"] for s in samples]
    assert ids[0] == ids[1] == opaque_id("TCGA-AB-1234") and ids[2] == opaque_id("TCGA-CD-5678")
    assert len({s.meta["tile_id"] for s in samples}) == 3
    assert not any("TCGA" in str(v) for s in samples for v in s.meta.values())
    assert samples[0].meta["mask"] == "none" and samples[0].image.dtype == np.uint8


def test_a_regenerated_set_is_scored_afresh(plugins, glas, tmp_path, capsys) -> None:
    """Evaluate a synthetic folder, regenerate it with other images of the same count, and
    evaluate again: the second run must not return the first run's FD (results are keyed on
    the sets' content, not their path and size)."""
    import shutil

    real = _dataset(tmp_path / "real", glas[:8])
    syn = tmp_path / "syn"
    out = tmp_path / "out"
    argv = ["evaluate", "--real", str(real), "--synthetic", f"s={syn}", "--encoders", "pooled",
            "--out", str(out)]  # fmt: skip

    def fd() -> float:
        assert main(argv) == 0, capsys.readouterr().err
        doc = json.loads((out / "metrics.json").read_text())
        return doc["results"]["frechet"]["s"]["encoders"]["pooled"]["fd"]

    _dataset(syn, glas[8:16])
    first = fd()
    shutil.rmtree(syn)
    _dataset(syn, glas[16:24])  # same count, other images
    second = fd()
    assert second != pytest.approx(first)
    shutil.rmtree(out)
    assert fd() == pytest.approx(second, rel=1e-12)  # what a fresh run gives
    PooledEncoder.seen = 0
    assert fd() == pytest.approx(second, rel=1e-12) and PooledEncoder.seen == 0  # resumed


def test_synthetic_set_from_held_out_sources_is_refused(plugins, glas, tmp_path, capsys) -> None:
    """Rows generated from held-out layouts (their slide ids) or with held-out crops are
    refused by name; --allow-overlap evaluates and records the overlap."""
    from htd_core.splits import opaque_source

    real, test = _dataset(tmp_path / "real", glas[:8]), _dataset(tmp_path / "test", glas[8:12])
    leaked = _dataset(tmp_path / "leaked", glas[8:10] + glas[16:18])  # two held-out layouts
    crops = _dataset(tmp_path / "crops", _with_crops(glas[16:20]), ("crop_provenance",))
    clean = _dataset(tmp_path / "clean", glas[16:20])
    base = ["evaluate", "--real", str(real), "--real-test", str(test), "--encoders", "pooled"]
    held = sorted({opaque_source(s.meta["slide_id"]) for s in glas[8:10]})
    for syn, shared in ((leaked, held), (crops, None)):
        argv = [*base, "--synthetic", f"x={syn}", "--out", str(tmp_path / "o")]
        if shared is None:  # crops recorded as cut from a held-out image
            rows = (syn / "manifest.csv").read_text().replace('""x""', f'""{held[0]}""')
            (syn / "manifest.csv").write_text(rows)
            shared = held[:1]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "synthetic set 'x' shares" in err and all(h in err for h in shared), err
        assert not (tmp_path / "o" / "metrics.json").exists()
    out = tmp_path / "allowed"
    argv = [*base, "--synthetic", f"x={leaked}", "--synthetic", f"ok={clean}", "--out", str(out)]
    assert main([*argv, "--allow-overlap"]) == 0, capsys.readouterr().err
    overlap = json.loads((out / "metrics.json").read_text())["inputs"]["overlap"]
    assert set(overlap) == {"x"} and overlap["x"]["sources"] == held
    assert overlap["x"]["layout_rows"] == 2 and overlap["x"]["rows"] == 2
    assert "LEAKAGE" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny controlnet_ldm saved as a pipeline folder (its autoencoder reconstructs)."""
    from htd_core import Pipeline
    from htd_core.testing import synthetic_sample

    pipe = Pipeline(
        condition_builders=["semantic_map"], backbone={"name": "controlnet_ldm", "preset": "tiny"}
    )
    samples = [synthetic_sample(16, seed=s) for s in range(2)]
    pipe.fit(samples, steps=1, vae_steps=2, batch_size=2, progress=False, tensorboard=False)
    return pipe.save_pretrained(tmp_path_factory.mktemp("recon") / "model")


def test_model_gives_the_reconstruction_fd(
    plugins, register_plugin, glas, tiny_model, tmp_path, capsys
) -> None:
    """--model: FD of training images' autoencoder reconstructions against the held-out set
    (as many as the synthetic set), beside the synthetic set's; reconstructions' features are cached by the model's content."""
    from htd_core.pipeline_files import pipeline_id
    from htd_plugins.backbones import controlnet_ldm
    from htd_plugins.condition_builders import semantic_map

    register_plugin(controlnet_ldm)
    register_plugin(semantic_map)
    real, test = _dataset(tmp_path / "real", glas[:8]), _dataset(tmp_path / "test", glas[8:12])
    syn = _dataset(tmp_path / "syn", glas[16:20])
    out = tmp_path / "out"
    argv = ["evaluate", "--real", str(real), "--real-test", str(test), "--synthetic", f"s={syn}",
            "--encoders", "pooled", "--model", str(tiny_model), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads((out / "metrics.json").read_text())
    fd = doc["results"]["frechet"]["s"]["encoders"]["pooled"]
    assert fd["n_reconstruction"] == 4 and fd["fd_reconstruction"] > 0
    assert doc["inputs"]["model"]["id"] == pipeline_id(tiny_model)
    report = (out / "report.md").read_text()
    assert "autoencoder reconstructions of training images (reference)" in report
    assert "real training images (reference)" in report
    assert (out / "cache" / f"recon-{pipeline_id(tiny_model)}-features-pooled.npz").is_file()
    PooledEncoder.seen = 0
    assert main([*argv, "--force"]) == 0
    assert PooledEncoder.seen == 4  # only the synthetic images: real and reconstructions cached
    again = json.loads((out / "metrics.json").read_text())["results"]["frechet"]["s"]
    assert again["encoders"]["pooled"]["fd_reconstruction"] == pytest.approx(
        fd["fd_reconstruction"], rel=1e-9
    )
    assert main([*argv[:-2], "--model", str(tmp_path), "--out", str(out)]) == 2
    assert "not a saved pipeline" in capsys.readouterr().err
