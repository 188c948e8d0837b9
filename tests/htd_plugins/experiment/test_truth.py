"""What the experiment must get right before its numbers mean anything: crops that cannot be
copied (GlaS at 64 px), verdicts read from intervals (a tie when they overlap), seeds, the
crop source the data must serve, and native resolution for the ``gpu`` budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import ConfigError
from htd_core.types import ClassMap, TissueSample
from htd_plugins.experiment import Experiment, load_experiment
from htd_plugins.experiment import summary as sm
from htd_plugins.experiment.claims import orderings


def glas(shared: Path, **extra) -> dict:
    return {
        "name": "glas", "budget": "tiny", "arms": ["crop"],
        "data": {"sampler": "tiles",
                 "options": {"root": str(shared / "glas"), "patch_size": 160, "stride": 64,
                             "rule": "heterogeneous", "mpp": 0.9},
                 "train": {"split": "train"}, "test": {"split": "test"}}, **extra,
    }  # fmt: skip


def test_no_crop_of_the_experiments_crop_arm_overlaps_its_target_at_64_px(shared_data):
    """The experiment's data at 64 px (as cpu-quick cuts it), its crop bank and the crop arm's
    builder: every placed crop is outside its target's window; the old ``elsewhere``
    placement, on the same patches, overlaps (so the check can fail)."""
    from htd_core.plugins import create
    from htd_plugins.condition_builders import CropBank, crop_overlaps_window
    from htd_plugins.experiment.config import CROPS
    from htd_plugins.experiment.data import sample_splits
    from htd_plugins.experiment.runner import BANK

    data = sample_splits(glas(Path(shared_data))["data"], 64, 80, 4, 0)
    train = data.train
    bank = CropBank.from_samples(train, seed=0, **BANK)
    classes = list(train[0].class_map.names)
    counts = {}
    for placement in ("outside", "elsewhere"):
        options = {**CROPS, "placement": placement}
        builder = create("condition_builders", "crop", bank=bank, classes=classes, **options)
        placed = overlapping = 0
        for i, sample in enumerate(train):
            prov = builder.build(sample, seed=i).meta["crop_provenance"]
            for p in prov.values():
                if p and "placed_size" in p:
                    placed += 1
                    overlapping += crop_overlaps_window(p, sample.meta, sample.size)
        counts[placement] = (placed, overlapping)
    placed, overlapping = counts["outside"]
    assert placed >= 1.5 * len(train) and overlapping == 0
    assert counts["elsewhere"][1] > 0.5 * counts["elsewhere"][0]


def _seeds(values: dict[int, tuple[float, list[float]]]) -> dict[int, dict]:
    """Per-seed frechet results of one encoder with fixed values and resamples."""
    return {s: {"encoders": {"e": {"label": "E", "fd": v, "fd_bootstrap": r, "kid": v / 100,
                                   "kid_bootstrap": [x / 100 for x in r]}}}
            for s, (v, r) in values.items()}  # fmt: skip


def test_a_tie_is_called_when_intervals_overlap():
    """Fixed numbers: resamples of crop and map-only that overlap give a tie; separated ones
    holds (or does not hold, reversed); the verdict pairs seed by seed, resample by resample."""
    spread = list(np.linspace(-5, 5, 41))
    near = {0: (50.0, [50 + x for x in spread]), 1: (52.0, [52 + x for x in spread])}
    a_bit_worse = {
        0: (53.0, [53 + x for x in spread[::-1]]),
        1: (55.0, [55 + x for x in spread[::-1]]),
    }
    far = {0: (90.0, [90 + x for x in spread]), 1: (92.0, [92 + x for x in spread])}
    metric = sm.fd("e", "E")
    tie = sm.difference(_seeds(near), _seeds(a_bit_worse), metric)
    assert tie.mean == pytest.approx(-3.0) and tie.ci[0] < 0 < tie.ci[1]
    assert sm.verdict(tie, upper=0.0) == "tie"
    holds = sm.difference(_seeds(near), _seeds(far), metric)
    assert holds.ci[1] < 0 and sm.verdict(holds, upper=0.0) == "holds"
    reverse = sm.difference(_seeds(far), _seeds(near), metric)
    assert sm.verdict(reverse, upper=0.0) == "does not hold"
    # a difference whose interval reaches the edge exactly is a tie, not a verdict
    assert sm.verdict(sm.Estimate(0.0, [0.0, 0.0]), lower=0.0) == "tie"
    assert sm.verdict(sm.Estimate(0.0, [-1e-17, 1e-17]), lower=0.0) == "tie"  # rounding
    assert sm.verdict(sm.Estimate(-1e-3, [-2e-3, -1e-4]), lower=0.0) == "does not hold"
    # the experiment's claims read the same way, KID beside FD
    scores = {"frechet": {"crop": _seeds(near), "semantic_map": _seeds(a_bit_worse),
                          "embedding": _seeds(far), "unconditional": _seeds(far)}}  # fmt: skip
    claims = {o["claim"]: o for o in orderings(scores, list(scores["frechet"]))}
    assert claims["FD(map + crop) < FD(map only): crops add to the map, E"]["verdict"] == "tie"
    assert claims["FD(map + crop) < FD(map + embedding), E"]["verdict"] == "holds"
    assert claims["FD(map + crop) < FD(map + embedding), E"]["kid"]["verdict"] == "holds"
    assert claims["FD(map + crop) < FD(unconditional) / 2, E"]["verdict"] == "does not hold"


def test_an_interval_pools_seeds_and_resamples_and_falls_back_to_t():
    biased = {0: (10.0, [13.0, 14.0, 15.0]), 1: (20.0, [23.0, 24.0, 25.0])}
    est = sm.estimate(_seeds(biased), sm.fd("e", "E"))
    assert est.mean == 15.0 and est.values == [10.0, 20.0]
    assert 9.0 <= est.ci[0] < 10.0 and 20.0 < est.ci[1] <= 21.0  # each seed shifted onto its FD
    t = sm.estimate({0: {"v": 1.0}, 1: {"v": 3.0}}, sm.Metric("", lambda m: m["v"]))
    assert t.method == "t over 2 seeds" and t.ci[0] < 1.0 and t.ci[1] > 3.0
    one = sm.estimate({0: {"v": 1.0}}, sm.Metric("", lambda m: m["v"]))
    assert one.ci is None and "no interval" in sm.verdict(one, upper=2.0)
    shared = sm.estimate({0: {"v": 2.0}, 1: {"v": 2.0}}, sm.Metric("", lambda m: m["v"]))
    assert shared.mean == 2.0 and shared.ci is None  # not a zero-width interval
    assert shared.method == "the same value at 2 seeds, no interval"


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"seeds": []}, "seeds=\\[\\]: give a non-empty list"),
     ({"seeds": [0, "1"]}, "seeds: '1' is not an integer"),
     ({"seeds": [0, 1.5]}, "seeds: 1.5 is not an integer"),
     ({"seeds": [1, 1]}, "listed twice.*list each seed once"),
     ({"seeds": [0], "seed": 0}, "not both"),
     ({"arms": ["crop", "crop"]}, "listed twice.*list each arm once")],
)  # fmt: skip
def test_bad_seeds_and_arms_are_refused(extra, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(glas(Path("/nonexistent"), **extra))


def test_cli_bad_seeds_exit_2_with_one_line(tmp_path, capsys):
    from htd_core.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(glas(tmp_path, seeds=[])))
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seeds" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_outside_crops_need_source_ids_refused_before_training(tmp_path):
    """Training patches that record no source (a tile set without ids): the crop arm's
    ``placement: outside`` cannot be served; one line naming the option and the fix, before
    the autoencoder or any arm is trained."""
    from htd_plugins.experiment.data import ExperimentData

    cm = ClassMap(("a", "b"))
    rng = np.random.default_rng(0)

    def patch(split: str) -> TissueSample:
        mask = np.zeros((32, 32), np.uint8)
        mask[:, 16:] = 1
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        return TissueSample(image, mask, cm, {"split": split})

    def data() -> ExperimentData:
        return ExperimentData(
            [patch("train") for _ in range(6)], [patch("test") for _ in range(4)], "x"
        )

    exp = Experiment(glas(tmp_path), output_dir=tmp_path / "out", data_source=data,
                     log=lambda text: None)  # fmt: skip
    with pytest.raises(ConfigError, match=r"placement: outside.*slide_id.*placement: elsewhere"):
        exp.run()
    assert not (tmp_path / "out" / "autoencoder").exists()
    assert not (tmp_path / "out" / "arms").exists()


def test_the_gpu_budget_reads_native_resolution_and_upsampling_is_refused(tmp_path):
    cfg = glas(tmp_path / "no-data", arms=["unconditional"])
    exp = Experiment(cfg, budget="gpu", output_dir=tmp_path / "a", log=lambda text: None)
    assert exp.image_size == 160  # the data's patch size, a multiple of the paper preset's 32
    with pytest.raises(ConfigError, match=r"image_size=256 .* upsampled x1\.60"):
        Experiment({**cfg, "budget_options": {"image_size": 256}}, budget="gpu",
                   output_dir=tmp_path / "b")  # fmt: skip
    assert not (tmp_path / "b").exists()


def test_a_claim_not_measured_shows_no_difference():
    """A verdict of "not measured" prints no (zero) difference beside it; a measured one does,
    and KID's follows the same rule."""
    from htd_plugins.experiment.results import ordering_lines

    zero = {"mean": 0.0, "ci": [0.0, 0.0]}
    results = {"budget": {"name": "cpu"}, "orderings": [
        {"claim": "IoU(a) > IoU(b)", "verdict": "not measured (at or below chance)",
         "difference": zero},
        {"claim": "FD(a) < FD(b)", "verdict": "tie", "difference": {"mean": -1.5, "ci": [-3, 1]},
         "kid": {"verdict": "not measured (no KID)", "difference": zero}},
    ]}  # fmt: skip
    lines = ordering_lines(results)
    assert "- IoU(a) > IoU(b): **not measured (at or below chance)**" in lines
    assert "- FD(a) < FD(b): **tie** (-1.5 [-3, +1]); KID: **not measured (no KID)**" in lines


def test_a_score_whose_interval_reaches_chance_is_flagged():
    """Table 2 and the adherence table mark a score whose interval reaches chance mIoU (the
    unconditional arm's, typically); one clear of it is not marked."""
    from htd_plugins.experiment.tables import adherence_table, chance_flag

    assert chance_flag(sm.Estimate(0.12, [0.08, 0.15]), 0.14) == " (at or below chance)"
    assert chance_flag(sm.Estimate(0.30, [0.27, 0.33]), 0.14) == ""
    assert chance_flag(sm.Estimate(0.10), 0.14) == " (at or below chance)"  # no interval
    assert chance_flag(sm.Estimate(None), 0.14) == chance_flag(sm.Estimate(0.1), None) == ""

    def seeds(value: float) -> dict[int, dict]:
        part = {"mean_iou": value, "bootstrap": {"mean_iou": [value - 0.01, value + 0.01]}}
        return {s: {"adherence": part, "ceiling": {"mean_iou": 0.6}, "ratio": value / 0.6,
                    "chance_mean_iou": 0.15} for s in (0, 1)}  # fmt: skip

    lines = adherence_table({"layout_adherence": {"unconditional": seeds(0.12),
                                                  "crop": seeds(0.3)}}, ["unconditional", "crop"])  # fmt: skip
    rows = {r.split(" | ")[0]: r for r in "\n".join(lines).splitlines() if r.startswith("| ")}
    assert "(at or below chance)" in rows["| unconditional (its own model)"]
    assert "(at or below chance)" not in rows["| map + crop (the method)"]
