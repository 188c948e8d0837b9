"""Ablation arms: an arm's own training options (``fit``), the named ablation arms, and every
arm outside the paper's four read against map + crop with paired intervals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import ConfigError
from htd_plugins.experiment import Experiment, load_experiment
from htd_plugins.experiment.ablation import ablation, ablation_lines
from htd_plugins.experiment.config import CROPS
from tests.htd_plugins.experiment.test_truth import _seeds, glas

LONG = {"name": "crop_long", "builders": ["semantic_map", {"name": "crop", **CROPS}],
        "fit": {"steps": 9}}  # fmt: skip


def _iou(values: dict[int, float], setting: str = "synthetic") -> dict[int, dict]:
    spread = np.linspace(-0.01, 0.01, 21)
    return {s: {"settings": {setting: {"mean_iou": v, "bootstrap": {"mean_iou": list(v + spread)}}}}
            for s, v in values.items()}  # fmt: skip


def test_each_ablation_arm_is_read_against_the_crop_arm():
    spread = list(np.linspace(-5, 5, 41))
    crop = {0: (50.0, [50 + x for x in spread]), 1: (52.0, [52 + x for x in spread])}
    better = {0: (30.0, [30 + x for x in spread]), 1: (31.0, [31 + x for x in spread])}
    close = {0: (51.0, [51 + x for x in spread[::-1]]), 1: (52.5, [52.5 + x for x in spread[::-1]])}
    scores = {
        "frechet": {"crop": _seeds(crop), "concat_ldm": _seeds(better), "collage": _seeds(close),
                    "semantic_map": _seeds(better)},
        "deeplabv3plus": {"crop": _iou({0: 0.50, 1: 0.52}), "concat_ldm": _iou({0: 0.40, 1: 0.41}),
                          "collage": _iou({0: 0.51, 1: 0.515})},
    }  # fmt: skip
    items = ablation(scores, ["crop", "semantic_map", "concat_ldm", "collage"])
    assert [i["arm"] for i in items] == ["concat_ldm", "collage"]  # the paper's arms are not
    concat = {r["reading"]: r for r in items[0]["readings"]}
    assert concat["FD E"]["verdict"] == "holds"  # lower FD than crop: better
    assert concat["FD E"]["difference"]["mean"] == pytest.approx(-20.5)
    assert concat["DeepLabv3+ mIoU, synthetic"]["verdict"] == "does not hold"  # lower mIoU
    collage = {r["reading"]: r for r in items[1]["readings"]}
    assert collage["FD E"]["verdict"] == "tie"
    assert "DeepLabv3+ mIoU, real+synthetic" not in collage  # not measured: no column
    lines = "\n".join(ablation_lines(items, {"concat_ldm": "concat"}))
    assert "| concat | -20.500 [" in lines and "better" in lines and "worse" in lines
    assert "tie" in lines
    assert ablation(scores, ["semantic_map", "concat_ldm"]) == []  # no crop arm: nothing to read


def test_an_arms_own_fit_options_are_parsed_keyed_and_checked(tmp_path):
    cfg = load_experiment(glas(Path("/nonexistent"), arms=["crop", "crop_min_snr", LONG]))
    arms = {a.name: a for a in cfg.arms}
    assert arms["crop_long"].fit == {"steps": 9} and arms["crop"].fit == {}
    assert arms["crop_min_snr"].fit == {"snr_gamma": 5.0}
    # another backbone given the steps it makes in the crop arm's wall time: one mapping
    concat = {**LONG, "name": "concat_long", "backbone": "concat_ldm", "fit": {"steps": 12}}
    arm = load_experiment(glas(Path("/nonexistent"), arms=["crop", concat])).arms[1]
    assert (arm.name, arm.backbone, arm.fit) == ("concat_long", "concat_ldm", {"steps": 12})
    with pytest.raises(ConfigError, match="fit must be a mapping"):
        load_experiment(glas(Path("/nonexistent"), arms=[{**LONG, "fit": [1]}]))
    bad = {**LONG, "fit": {"snr_gama": 5}}
    with pytest.raises(ConfigError, match=r"arm 'crop_long'.*snr_gama.*snr_gamma"):
        Experiment(glas(Path("/nonexistent"), arms=["crop", bad]), output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before any work
    with pytest.raises(ConfigError, match=r"fit has no option 'ema_decy'.*'ema_decay'"):
        Experiment(glas(Path("/nonexistent"), fit={"ema_decy": 0.9}), output_dir=tmp_path / "p")
    assert not (tmp_path / "p").exists()  # the file's own fit too


def test_ablation_arms_train_with_their_own_options_and_are_reported(shared_data, tmp_path):
    cfg = glas(Path(shared_data), arms=["crop", "crop_min_snr", LONG], seeds=[0],
               evaluators=["frechet", "layout_adherence"], encoders=["efficientnet_lite0"])  # fmt: skip
    out = tmp_path / "run"
    Experiment(cfg, output_dir=out, log=lambda text: None).run()

    def trained(arm: str) -> dict:
        return json.loads((out / "stages" / f"train--{arm}@0.json").read_text())["result"]

    assert trained("crop_long")["steps"] == 9 and trained("crop")["steps"] == 6  # tiny: 6
    assert trained("crop_min_snr")["key"] != trained("crop")["key"]
    # crop_long is crop's recipe but for the steps: it continues crop's model at step 6 (the
    # loop's resume, test_training.py: the weights of an uninterrupted run); Min-SNR does not
    assert trained("crop_long")["continued_from"] == {"arm": "crop", "step": 6}
    assert "continued_from" not in trained("crop_min_snr") and "continued_from" not in trained(
        "crop"
    )
    assert trained("crop_long")["model_dir"] != trained("crop")["model_dir"]
    results = json.loads((out / "results.json").read_text())
    assert [i["arm"] for i in results["ablation"]] == ["crop_min_snr", "crop_long"]
    readings = {r["reading"] for r in results["ablation"][0]["readings"]}
    assert "layout adherence mIoU" in readings and any(r.startswith("FD ") for r in readings)
    text = (out / "results.md").read_text()
    assert "## Ablation arms against map + crop" in text
    # the tiny preset trains unweighted; the arm's own fit sets Min-SNR-5
    assert "- denoiser loss: crop unweighted, crop_min_snr Min-SNR-5, crop_long unweighted" in text
    assert (
        "Continued (the same recipe but for the steps, so the same trajectory): crop_long "
        "from crop's model at step 6." in text
    )
    # the steps curve of the two (examples/steps_curve_figure.py)
    script = [
        sys.executable,
        str(Path(__file__).resolve().parents[3] / "examples" / "steps_curve_figure.py"),
    ]
    png = tmp_path / "curve.png"
    proc = subprocess.run([*script, str(out), "--arms", "crop_long", "crop", "--out", str(png)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png.stat().st_size > 10_000
    # paired: 9 steps against 6, a column per encoder the run used, each with its verdict
    assert "| dataset | steps | FD efficientnet_lite0 | layout adherence |" in proc.stdout
    row = next(x for x in proc.stdout.splitlines() if x.startswith("| glas | 6 -> 9 | "))
    assert len(re.findall(r"\] (better|worse|tie) \|", row)) == 2, row
    for bad, says in ((["crop", "crop_min_snr"], "arms with the same steps"),
                      (["crop", "crop"], "name an arm twice"),
                      (["crop", "cropp"], "the run has not arms ['cropp']")):  # fmt: skip
        proc = subprocess.run([*script, str(out), "--arms", *bad, "--out", str(tmp_path / "x.png")],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_the_presets_later_training_defaults_are_in_the_train_key(tmp_path):
    """The ``small`` preset trains with Min-SNR-5: an arm trained before that default (same
    file, same budget) must not be reused as if it had it; an arm that sets it itself, or
    turns it off, is keyed by its own ``fit``."""
    cfg = glas(Path("/nonexistent"), arms=["crop", "crop_min_snr", "collage"])
    exp = Experiment(cfg, budget="cpu-quick", output_dir=tmp_path / "o")
    arms = {a.name: a for a in exp.config.arms}
    assert exp.recipe(arms["crop"]) == {"snr_gamma": 5.0}
    assert exp.recipe(arms["crop_min_snr"]) == {}  # its own fit says it
    assert exp.recipe(arms["collage"]) == {}  # nothing trains
    off = Experiment(glas(Path("/nonexistent"), arms=["crop"], fit={"snr_gamma": None}),
                     budget="cpu-quick", output_dir=tmp_path / "p")  # fmt: skip
    assert off.recipe(off.config.arms[0]) == {}
    vae = {"key": "v"}
    keys = {
        exp.arm_key(arms["crop"], vae, 0),
        off.arm_key(off.config.arms[0], vae, 0),
        exp.arm_key(arms["crop_min_snr"], vae, 0),
    }
    assert len(keys) == 3
    plain = Experiment(glas(Path("/nonexistent"), arms=["crop"]), output_dir=tmp_path / "r")
    old = plain.arm_key(plain.config.arms[0], vae, 0)  # tiny: unweighted, as runs before
    tiny_off = Experiment(glas(Path("/nonexistent"), arms=["crop"], fit={"snr_gamma": None}),
                          output_dir=tmp_path / "s")  # fmt: skip
    assert tiny_off.arm_key(tiny_off.config.arms[0], vae, 0) == old  # null: the original value
    tiny = Experiment(cfg, output_dir=tmp_path / "q")  # the tiny preset keeps plain epsilon
    assert tiny.recipe(arms["crop"]) == {}
    assert exp.loss_weighting() == {"crop": "Min-SNR-5", "crop_min_snr": "Min-SNR-5"}
    assert off.loss_weighting() == {"crop": "unweighted"}


def test_an_arm_on_its_own_autoencoder_folder_is_decoded_by_it(shared_data, tmp_path):
    """An autoencoder ablation in one run: the arm's options name another run's autoencoder
    folder; it trains on it, and the report reads the shared reconstruction row only for the
    arms the shared autoencoder decodes."""
    first = tmp_path / "first"
    Experiment(glas(Path(shared_data), arms=["crop"], seeds=[0], evaluators=["frechet"],
                    encoders=["efficientnet_lite0"]), output_dir=first, log=lambda t: None).run()  # fmt: skip
    own = {"name": "crop_own_ae", "builders": ["semantic_map", {"name": "crop", **CROPS}],
           "options": {"autoencoder": str(first / "autoencoder")}}  # fmt: skip
    cfg = glas(Path(shared_data), arms=["crop", own], seeds=[0], evaluators=["frechet"],
               encoders=["efficientnet_lite0"])  # fmt: skip
    out = tmp_path / "run"
    Experiment(cfg, output_dir=out, log=lambda text: None).run()
    results = json.loads((out / "results.json").read_text())
    assert results["decoded_by"] == {"crop": str(out / "autoencoder"),
                                     "crop_own_ae": str(first / "autoencoder")}  # fmt: skip
    trained = json.loads((out / "stages" / "train--crop_own_ae@0.json").read_text())["result"]
    vae = json.loads((Path(trained["model_dir"]) / "vae" / "config.json").read_text())
    assert vae["_name_or_path"] == str(first / "autoencoder")  # the model holds that autoencoder
    assert (
        "Not decoded by it, so not read against that row: crop_own_ae (its own autoencoder)"
        in (out / "results.md").read_text()
    )
