"""The ``collage`` reference arm in the experiment: no training, the crop arm's crops on the
same layouts, scored beside the diffusion arms; it cannot be the only arm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import ConfigError
from htd_plugins.experiment import Experiment
from tests.htd_plugins.experiment.test_truth import glas


def test_collage_runs_beside_the_crop_arm(shared_data, tmp_path):
    from htd_core.dataset import Dataset

    cfg = glas(Path(shared_data), arms=["collage", "crop"], seeds=[0],
               evaluators=["frechet", "layout_adherence"], encoders=["efficientnet_lite0"])  # fmt: skip
    out = tmp_path / "run"
    lines: list[str] = []
    Experiment(cfg, output_dir=out, log=lines.append).run()
    said = [line for line in lines if "collage@0" in line]
    assert any("train:collage@0: no training" in line for line in said)
    assert any(line.endswith("from training layouts, no sampler") for line in said)  # no ddim
    results = json.loads((out / "results.json").read_text())
    stages = json.loads((out / "stages" / "train--collage@0.json").read_text())["result"]
    assert stages["steps"] == 0
    collage = list(Dataset(out / "arms" / "collage" / "seed-0" / "synthetic"))
    crop = list(Dataset(out / "arms" / "crop" / "seed-0" / "synthetic"))
    assert len(collage) == len(crop) > 0
    for a, b in zip(collage, crop, strict=True):  # the same layouts and the same crops
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.meta.get("crop_sources") == b.meta.get("crop_sources")
    fd = results["scores"]["frechet"]
    assert {"collage", "crop"} <= set(fd) and fd["collage"]["0"]["encoders"]["efficientnet_lite0"][
        "fd"
    ] > 0
    assert "collage" in results["scores"]["layout_adherence"]
    assert "collage" in (out / "results.md").read_text()


def test_collage_alone_is_refused(shared_data, tmp_path):
    with pytest.raises(ConfigError, match="no arm has a latent diffusion backbone"):
        Experiment(glas(Path(shared_data), arms=["collage"]), output_dir=tmp_path / "r",
                   log=lambda text: None)  # fmt: skip
