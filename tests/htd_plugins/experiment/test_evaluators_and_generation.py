"""``htd experiment`` runs any registered evaluator through the one evaluation driver, and keys
its generation on the options it passes: changing guidance on a finished run regenerates and
re-scores, reuses the training, and the results say the value used (tiny budget, real GlaS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from htd_core import Evaluator, hookimpl


class MeanIntensity(Evaluator):
    """Mean pixel intensity of the synthetic images minus that of the real ones."""

    name = "mean_intensity"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.reset()

    def reset(self) -> None:
        self._sums = {"real": [0.0, 0], "synthetic": [0.0, 0]}

    def update(self, *, real=None, synthetic=None) -> None:
        for role, samples in (("real", real or ()), ("synthetic", synthetic or ())):
            for s in samples:
                self._sums[role][0] += float(np.asarray(s.image, np.float64).mean())
                self._sums[role][1] += 1

    def aggregate(self) -> dict:
        mean = {k: v[0] / max(v[1], 1) for k, v in self._sums.items()}
        return {"difference": self.scale * (mean["synthetic"] - mean["real"]),
                "n_real": self._sums["real"][1], "n_synthetic": self._sums["synthetic"][1]}  # fmt: skip


class IntensityPlugin:
    """A third-party plugin registering one evaluator."""

    @hookimpl
    def htd_register_evaluators(self, registry) -> None:
        registry.register("mean_intensity", MeanIntensity)


def config(shared: Path, evaluators: list, **extra) -> dict:
    return {
        "name": "glas-tiny",
        "data": {"sampler": "tiles",
                 "options": {"root": str(shared / "glas"), "patch_size": 160, "stride": 96,
                             "rule": "heterogeneous", "mpp": 0.9},
                 "train": {"split": "train"}, "test": {"split": "test"}},
        "arms": ["crop"], "evaluators": evaluators, "encoders": ["efficientnet_lite0"],
        "budget": "tiny", **extra,
    }  # fmt: skip


def run(cfg: dict, out: Path) -> dict:
    from htd_plugins.experiment import Experiment

    return Experiment(cfg, output_dir=out, log=lambda text: None).run()


def test_an_experiment_runs_an_evaluator_from_a_plugin(shared_data, builtin_manager, tmp_path):
    builtin_manager.register(IntensityPlugin(), "intensity_plugin")
    cfg = config(Path(shared_data), [{"name": "mean_intensity", "scale": 2.0}])
    results = run(cfg, tmp_path / "run")
    metrics = results["scores"]["mean_intensity"]["crop"][0]
    assert metrics["n_synthetic"] == 8 and metrics["n_real"] > 8  # held-out + training patches
    assert np.isfinite(metrics["difference"])
    report = (tmp_path / "run" / "evaluation" / "report.md").read_text()
    assert "## mean_intensity" in report and "difference" in report  # its own section
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["scores"]["mean_intensity"]["crop"]["0"] == metrics
    # the evaluator's options are checked with the rest, before any data is read
    bad = config(tmp_path / "no-data", [{"name": "mean_intensity", "scael": 2.0}])
    from htd_core.errors import HtdError

    with pytest.raises(HtdError, match="scael"):
        run(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_changing_guidance_regenerates_and_rescores_but_reuses_training(
    shared_data, builtin_manager, tmp_path
):
    from htd_core.dataset import Dataset

    out = tmp_path / "run"
    first = run(config(Path(shared_data), ["frechet"]), out)
    synthetic = out / "arms" / "crop" / "seed-0" / "synthetic"
    images = [s.image for s in Dataset(synthetic)]
    stored = out / "evaluation" / "results" / "frechet--crop@0.json"
    key = json.loads(stored.read_text())["key"]
    train = (out / "stages" / "train--crop@0.json").stat().st_mtime_ns
    second = run(
        config(Path(shared_data), ["frechet"], budget_options={"guidance_scale": 4.0}), out
    )
    assert (out / "stages" / "train--crop@0.json").stat().st_mtime_ns == train  # training reused
    assert second["arms"]["crop"] == first["arms"]["crop"]
    rows = Dataset(synthetic).rows
    assert {float(r["guidance_scale"]) for r in rows} == {4.0}  # recorded as used...
    again = [s.image for s in Dataset(synthetic)]
    assert any(not np.array_equal(a, b) for a, b in zip(images, again, strict=True))  # ...and used
    assert second["generated"]["crop"][0]["options"]["guidance_scale"] == 4.0
    assert json.loads(stored.read_text())["key"] != key  # FD re-scored
    fd = lambda r: r["scores"]["frechet"]["crop"][0]["encoders"]["efficientnet_lite0"]["fd"]  # noqa: E731
    assert fd(second) != fd(first)
    md = (out / "results.md").read_text()
    assert "guidance 4.0 asked; used per arm: crop 4.0" in md


def test_a_larger_synthetic_set_grows_the_smaller_one_and_a_smaller_one_is_redone(
    shared_data, builtin_manager, tmp_path
):
    from htd_core.dataset import Dataset

    out, lines = tmp_path / "run", []
    first = run(config(Path(shared_data), ["frechet"]), out)  # tiny: 8 synthetic patches
    synthetic = out / "arms" / "crop" / "seed-0" / "synthetic"
    images = [s.image for s in Dataset(synthetic)]
    made = {p.name: p.stat().st_mtime_ns for p in (synthetic / "images").iterdir()}
    stored = out / "evaluation" / "results" / "frechet--crop@0.json"
    key = json.loads(stored.read_text())["key"]
    from htd_plugins.experiment import Experiment

    cfg = config(Path(shared_data), ["frechet"], budget_options={"n_synthetic": 12})
    grown = Experiment(cfg, output_dir=out, log=lines.append).run()
    assert any(
        "8 samples kept (a killed run or a smaller set); resuming at sample 8 of 12" in x
        for x in lines
    )
    assert len(Dataset(synthetic)) == 12 and grown["generated"]["crop"][0]["n"] == 12
    assert {p.name: p.stat().st_mtime_ns for p in (synthetic / "images").iterdir()
            if p.name in made} == made  # the first 8 were kept, not redrawn  # fmt: skip
    assert json.loads(stored.read_text())["key"] != key  # the larger set is scored anew
    assert (
        grown["scores"]["frechet"]["crop"][0]["encoders"]["efficientnet_lite0"]["n_synthetic"] == 12
    )
    again = run(config(Path(shared_data), ["frechet"]), out)  # back to 8: redone, same samples
    assert len(Dataset(synthetic)) == 8
    assert all(np.array_equal(a, s.image) for a, s in zip(images, Dataset(synthetic), strict=True))
    fd = lambda r: r["scores"]["frechet"]["crop"][0]["encoders"]["efficientnet_lite0"]["fd"]  # noqa: E731
    assert fd(again) == fd(first)
