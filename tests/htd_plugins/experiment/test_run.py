"""``htd experiment`` end to end on real GlaS tiles (tiny budget, two seeds): tables with
intervals and verdicts, separately trained arms per seed, crops from outside the target, the
same layouts for every arm, stage reuse, and a kill -9 that changes no number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from htd_plugins.experiment.stages import Stages, own_folder


def experiment_file(folder: Path, shared: Path) -> Path:
    cfg = {
        "name": "glas-tiny",
        "data": {"sampler": "tiles",
                 "options": {"root": str(shared / "glas"), "patch_size": 160, "stride": 96,
                             "rule": "heterogeneous", "mpp": 0.9},
                 "train": {"split": "train"}, "test": {"split": "test"}},
        "arms": ["crop", "unconditional"],
        "evaluators": ["frechet", "deeplabv3plus"],
        "encoders": ["efficientnet_lite0"],
        "budget": "tiny",
        "seeds": [0, 1],
    }  # fmt: skip
    path = folder / "glas-tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def htd(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "htd_core.cli", "experiment", *args, "--threads", "1"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def uninterrupted(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    config = experiment_file(folder, Path(shared_data))
    out = folder / "run"
    stdout = finish(htd(str(config), "--out", str(out)))
    return config, out, stdout


def test_writes_the_papers_tables_for_separately_trained_arms(uninterrupted):
    config, out, stdout = uninterrupted
    md = (out / "results.md").read_text()
    assert "## Table 1: Frechet distance" in md and "## Table 2: segmentation" in md
    assert "unconditional (its own model)" in md and "real training patches" in md
    assert "## The paper's orderings" in md and "results_md:" in stdout
    assert "seeds: [0, 1]" in md and "; KID: **" in md  # KID beside FD in every FD verdict
    results = json.loads((out / "results.json").read_text())
    fd = results["scores"]["frechet"]
    assert set(fd) == {"crop", "unconditional"} and set(fd["crop"]) == {"0", "1"}
    encoders = [fd[a][s]["encoders"]["efficientnet_lite0"] for a in fd for s in fd[a]]
    assert all(e["fd"] > 0 and len(e["fd_bootstrap"]) == 200 for e in encoders)
    assert {"fd_real_train", "fd_reconstruction", "kid", "fd_ci", "kid_ci"} <= set(encoders[0])
    assert encoders[0]["n_reconstruction"] == encoders[0]["n_synthetic"]  # same N as the arms
    seg = results["scores"]["deeplabv3plus"]
    assert set(seg["crop"]["0"]["settings"]) == {"real", "synthetic", "real+synthetic"}
    for s in ("0", "1"):  # the real setting does not depend on the arm: the same for each
        assert seg["crop"][s]["settings"]["real"] == seg["unconditional"][s]["settings"]["real"]
    verdicts = {o["verdict"].split(" (")[0] for o in results["orderings"]}
    assert verdicts <= {"holds", "tie", "does not hold", "not measured"}
    assert all(o["difference"]["ci"] is not None for o in results["orderings"][:2])
    assert (out / "figure.png").stat().st_size > 1000
    # every evaluator's own section, as htd evaluate writes it, linked from results.md
    report = (out / "evaluation" / "report.md").read_text()
    assert "frechet" in report and "crop@1" in report
    assert "evaluation/report.md" in md
    # what the arms sampled with, as resolved and recorded by the generate stages
    gen = results["generated"]
    assert gen["crop"]["1"]["options"]["guidance_scale"] == 2.0
    assert gen["crop"]["0"]["guidance_used"] == [2.0]
    assert gen["unconditional"]["1"]["guidance_used"] == [1.0]  # never guided
    assert gen["crop"]["0"]["options"]["seed"] == 0 and gen["crop"]["1"]["options"]["seed"] == 1
    # each arm and seed its own model on the one shared autoencoder
    models = {(a, s): Path(results["arms"][a][s]["model_dir"]) for a in fd for s in ("0", "1")}
    assert len(set(models.values())) == 4
    cfgs = {k: json.loads((m / "htd_config.json").read_text()) for k, m in models.items()}
    assert cfgs["unconditional", "0"]["channels"] == [] and cfgs["crop", "1"]["channels"]
    assert results["autoencoder"]["steps"] == results["budget"]["vae_steps"]


def test_no_crop_overlaps_its_target_and_the_placement_is_reported(uninterrupted):
    from htd_core.dataset import Dataset

    _, out, _ = uninterrupted
    results = json.loads((out / "results.json").read_text())
    stats = results["diagnostics"]["placement"]
    assert set(stats) == {"crop"} and stats["crop"]["overlapping_target"] == 0
    assert stats["crop"]["crops_per_layout"] > 1 and stats["crop"]["seeds"] == 2
    md = (out / "results.md").read_text()
    assert "## Crop placement" in md and "| overlapping target |" in md
    checked = 0
    for row in Dataset(out / "arms" / "crop" / "seed-1" / "synthetic").rows:
        for p in json.loads(row["crop_provenance"]).values():
            if p and "placed_size" in p:
                assert p["source"] == "bank" and "bank_index" in p
                checked += 1
    assert checked  # every crop came from the bank, none was cut from the target


def test_every_arm_generates_from_the_same_training_layouts(uninterrupted):
    from htd_core.dataset import Dataset

    _, out, _ = uninterrupted
    crop, unconditional = (
        Dataset(out / "arms" / a / "seed-0" / "synthetic") for a in ("crop", "unconditional")
    )
    assert len(crop) == len(unconditional) > 0
    held_out = {r["slide_id"] for r in Dataset(out / "data" / "test").rows}
    for a, b in zip(crop.rows, unconditional.rows, strict=True):
        assert a["layout_source_id"] == b["layout_source_id"] and a["seed"] == b["seed"]
        assert a["layout_source_id"] not in held_out  # layouts from the train split only
    assert all(json.loads(r["crop_source_ids"]) for r in crop.rows)  # crops were used
    other = Dataset(out / "arms" / "crop" / "seed-1" / "synthetic")
    assert [r["layout_source_id"] for r in other.rows] == [r["layout_source_id"] for r in crop.rows]


def test_a_rerun_reuses_every_stage(uninterrupted):
    config, out, _ = uninterrupted
    before = {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()}
    proc = htd(str(config), "--out", str(out))
    finish(proc)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()}
    assert before == after
    assert "train:crop@1: done before, reused" in (out / "log.txt").read_text()


def test_kill_9_and_rerun_gives_the_same_numbers(uninterrupted, tmp_path):
    config, reference, _ = uninterrupted
    out = tmp_path / "killed"
    proc = htd(str(config), "--out", str(out))
    marker = out / "stages" / "train--crop@0.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "results.json").exists()
    finish(htd(str(config), "--out", str(out)))
    log = (out / "log.txt").read_text()
    assert "autoencoder: done before, reused" in log
    got = json.loads((out / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    assert got["scores"] == want["scores"]
    loss = lambda r: [r["arms"][a][s]["final_loss"] for a in r["arms"] for s in r["arms"][a]]  # noqa: E731
    assert loss(got) == loss(want)


def test_a_stage_whose_inputs_changed_is_redone(tmp_path):
    logged = []
    stages = Stages(tmp_path, logged.append)
    stages.put("train:crop", "k1", {"steps": 6})
    assert stages.get("train:crop", "k1") == {"steps": 6} and logged
    assert stages.get("train:crop", "k2") is None  # other inputs: not reused
    work = tmp_path / "arms" / "crop" / "train"
    own_folder(work, "k1")
    work.mkdir()
    (work / "checkpoint").write_text("old")
    own_folder(work, "k1")
    assert (work / "checkpoint").exists()  # same inputs: resumed
    own_folder(work, "k2")
    assert not work.exists()  # stale: removed (htd wrote it), the stage starts afresh
