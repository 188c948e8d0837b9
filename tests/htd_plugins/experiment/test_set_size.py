"""One arm's DeepLabv3+ scores across runs at several synthetic set sizes: paired by seed and
resample against the first run, refused when the runs are not one experiment
(``htd_plugins.experiment.set_size``, ``examples/synthetic_set_size.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_plugins.experiment import set_size_lines, set_size_rows

SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "synthetic_set_size.py"


def results(n: int, shift: float, real: float = 0.6, name: str = "glas") -> dict:
    """Two seeds, 50 resamples each: synthetic and real + synthetic ``shift`` above a base."""
    rng = np.random.default_rng(0)
    per_seed = {}
    for seed in ("0", "1"):
        noise = rng.normal(0, 0.01, 50)
        settings = {}
        for setting, base in (("real", real), ("synthetic", 0.4 + shift),
                              ("real+synthetic", 0.59 + shift)):  # fmt: skip
            boot = (base + noise).tolist()
            settings[setting] = {"mean_iou": base, "bootstrap": {"mean_iou": boot},
                                 "n_train": n if setting == "synthetic" else 600}  # fmt: skip
        per_seed[seed] = {"settings": settings}
    return {"name": name, "data_key": "k", "scores": {"deeplabv3plus": {"crop": per_seed}},
            "generated": {"crop": {"0": {"n": n}, "1": {"n": n}}}}  # fmt: skip


def test_rows_pair_each_run_with_the_first_and_read_the_gain_over_real():
    rows = set_size_rows({"1x": results(600, 0.0), "3x": results(1800, 0.03)})
    assert [r["n_synthetic"] for r in rows] == [[600], [1800]] and rows[0]["n_real"] == [600]
    # the resamples share the noise: paired differences have no spread
    assert rows[1]["vs_first"]["synthetic"].mean == pytest.approx(0.03)
    assert rows[1]["vs_first"]["synthetic"].ci == pytest.approx([0.03, 0.03])
    assert rows[0]["gain"].mean == pytest.approx(-0.01) and rows[1]["gain"].mean == pytest.approx(
        0.02
    )
    lines = set_size_lines(rows, "glas")
    assert lines[2].startswith("| glas | 600 (1x) | 0.600 [") and lines[2].endswith(" | - | - |")
    assert "| 0.400 [" in lines[2]  # synthetic alone
    assert lines[2].count(" worse |") == 1  # real + synthetic 0.01 below real at 1x
    assert lines[3].startswith("| glas | 1800 (3x) | ") and lines[3].count(" better |") == 3


def test_runs_that_are_not_one_experiment_are_refused(tmp_path):
    with pytest.raises(InputError, match="real-data DeepLabv3\\+ scores differ"):
        set_size_rows({"a": results(600, 0.0), "b": results(1800, 0.0, real=0.5)})
    with pytest.raises(InputError, match="no deeplabv3plus scores of arm 'embedding'"):
        set_size_rows({"a": results(600, 0.0)}, arm="embedding")
    no_real = results(600, 0.0)
    for m in no_real["scores"]["deeplabv3plus"]["crop"].values():
        del m["settings"]["real"]
    with pytest.raises(InputError, match="a: its DeepLabv3\\+ scores have no real setting"):
        set_size_rows({"a": no_real, "b": results(1800, 0.0)})
    assert "| 400 (0.667x) |" in set_size_lines(set_size_rows({"a": results(400, 0.0)}), "g")[2]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(results(600, 0.0)))
    b.write_text(json.dumps(results(1800, 0.0, real=0.5)))
    (tmp_path / "list.json").write_text("[]")
    for argv, says in (([str(a), str(b)], "scores differ"),
                       ([str(a), str(tmp_path / "none")], "not an htd experiment's results.json"),
                       ([str(tmp_path / "list.json")], "not an htd experiment's results.json")):  # fmt: skip
        proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr
    c = tmp_path / "c.json"
    c.write_text(
        json.dumps(results(3000, 0.05, name="wsss4luad"))
    )  # another dataset: its own group
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(c)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("| dataset |") == 1 and "| wsss4luad | 3000 (5x) | " in proc.stdout
    d = tmp_path / "d.json"
    d.write_text(json.dumps(results(1800, 0.0)))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(d), str(a)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "not smallest set first ([1800, 600])" in proc.stderr
