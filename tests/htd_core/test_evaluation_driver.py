"""The one evaluation driver (``htd evaluate``, ``htd experiment``, ``Pipeline.evaluate``):
lifecycle, run-wide settings, stored results keyed by their inputs, subsets; it names no
evaluator."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from htd_core import Evaluator, Pipeline, hookimpl
from htd_core.errors import ConfigError, HtdError
from htd_core.evaluation import EvaluationDriver, EvaluatorRun
from htd_core.interfaces.evaluator import RunSettings
from htd_core.testing import synthetic_sample

CALLS: list[tuple] = []


class Count(Evaluator):
    """Counts what it is given, and records the settings it was built with."""

    name = "count"

    def __init__(
        self, offset: int = 0, seed: int = 0, output_dir: str | None = None, cache_dir: Any = None
    ) -> None:
        self.offset, self.seed, self.output_dir = offset, seed, output_dir
        self.reset()

    def reset(self) -> None:
        CALLS.append(("reset",))
        self.n = {"real": 0, "synthetic": 0, "held_out": 0}

    def update(self, *, real=None, synthetic=None) -> None:
        CALLS.append(("update", len(real or ()), len(synthetic or ())))
        self.n["real"] += len(real or ())
        self.n["held_out"] += sum(s.meta.get("split") == "test" for s in real or ())
        self.n["synthetic"] += len(synthetic or ())

    def aggregate(self) -> dict:
        CALLS.append(("aggregate",))
        return {**self.n, "offset": self.offset, "seed": self.seed,
                "output_dir": str(self.output_dir)}  # fmt: skip


class CountPlugin:
    @hookimpl
    def htd_register_evaluators(self, registry) -> None:
        registry.register("count", Count)


@pytest.fixture
def sets():
    real = [synthetic_sample(8, seed=s) for s in range(5)]
    real[0].meta["split"] = "test"
    return real, {"a": [synthetic_sample(8, seed=10 + s) for s in range(7)],
                  "b": [synthetic_sample(8, seed=20 + s) for s in range(3)]}  # fmt: skip


def test_streams_each_set_through_the_lifecycle_with_the_run_settings(
    htd_manager, register_plugin, sets, tmp_path
):
    register_plugin(CountPlugin(), "count_plugin")
    real, synthetic = sets
    CALLS.clear()
    driver = EvaluationDriver([{"name": "count", "offset": 3}], settings=RunSettings(seed=9),
                              figures_dir=tmp_path / "figures", batch_size=2, progress=False)  # fmt: skip
    results = driver.run(real, synthetic)
    a = results["count"]["a"]
    assert (a["real"], a["held_out"], a["synthetic"]) == (5, 1, 7)
    assert a["offset"] == 3 and a["seed"] == 9  # the user's option and a run-wide setting
    assert a["output_dir"] == str(tmp_path / "figures" / "count-a")  # a folder per set
    assert results["count"]["b"]["synthetic"] == 3
    # built (its constructor resets), reset, the real set in batches of 2, then the
    # synthetic set, aggregate: per set
    assert CALLS[:9] == [("reset",), ("reset",), ("update", 2, 0), ("update", 2, 0),
                         ("update", 1, 0), ("update", 0, 2), ("update", 0, 2), ("update", 0, 2),
                         ("update", 0, 1)]  # fmt: skip
    assert driver.output_dirs()["count"]["b"] == tmp_path / "figures" / "count-b"
    assert driver.resolved_options() == {"count": {"seed": 9, "offset": 3}}


def test_stored_results_are_reused_until_an_input_changes(
    htd_manager, register_plugin, sets, tmp_path
):
    register_plugin(CountPlugin(), "count_plugin")
    real, synthetic = sets
    store = tmp_path / "store"
    notes: list[str] = []

    def run(keys, **options):
        CALLS.clear()
        driver = EvaluationDriver([EvaluatorRun("count", options)], store=store, progress=False,
                                  log=notes.append)  # fmt: skip
        return driver.run(real, synthetic, real_key="r1", keys=keys)

    first = run({"a": "a1", "b": "b1"})
    assert ("aggregate",) in CALLS and json.loads((store / "count--a.json").read_text())["key"]
    assert run({"a": "a1", "b": "b1"}) == first and ("aggregate",) not in CALLS  # all reused
    assert any("reusing" in n for n in notes)
    run({"a": "a2", "b": "b1"})  # set a regenerated: a is scored afresh, b reused
    assert CALLS.count(("aggregate",)) == 1
    run({"a": "a2", "b": "b1"}, offset=1)  # another option: both afresh
    assert CALLS.count(("aggregate",)) == 2
    unkeyed = EvaluationDriver(["count"], store=tmp_path / "unkeyed", progress=False)
    unkeyed.run(real, synthetic)  # no content keys: nothing stored, nothing wrongly reused
    assert not (tmp_path / "unkeyed").exists()


def test_a_copied_run_folder_reuses_its_stored_results(
    htd_manager, register_plugin, sets, tmp_path, monkeypatch
):
    """Paths under the driver's ``root`` are keyed relative to it, so a copy of the folder
    reuses its results; a path outside it is still an input; keys written with full paths
    (before ``root``) are still read."""
    import shutil

    register_plugin(CountPlugin(), "count_plugin")
    real, synthetic = sets

    def scored(folder: Path, root: Path | None, cache: Path | None = None) -> int:
        CALLS.clear()
        settings = RunSettings(cache_dir=cache or folder / "cache")
        driver = EvaluationDriver(["count"], settings=settings, store=folder / "results",
                                  progress=False, root=root)  # fmt: skip
        driver.run(real, synthetic, real_key="r", keys={"a": "a1", "b": "b1"})
        return CALLS.count(("aggregate",))

    run, copy = tmp_path / "run", tmp_path / "run-copy"
    assert scored(run, run) == 2
    shutil.copytree(run, copy)
    assert scored(copy, copy) == 0  # its cache_dir is copy/cache: the same, relative to root
    assert scored(copy, copy, cache=tmp_path / "elsewhere") == 2  # outside root: an input
    old = tmp_path / "old"
    assert scored(old, None) == 2  # keyed with full paths, as before root
    assert scored(old, old) == 0  # still read
    shutil.copytree(old, tmp_path / "old-copy")
    assert scored(tmp_path / "old-copy", None) == 2  # without root a copy is scored again
    monkeypatch.chdir(tmp_path)  # a relative root: its paths are relative too
    assert scored(Path("rel"), Path("rel")) == 2
    shutil.copytree("rel", "rel2")
    assert scored(Path("rel2"), Path("rel2")) == 0
    assert scored(Path("rel2"), Path("rel2"), cache=Path("rel2-other")) == 2  # not under rel2


def test_a_subset_caps_the_synthetic_samples_scored(htd_manager, register_plugin, sets):
    register_plugin(CountPlugin(), "count_plugin")
    real, synthetic = sets
    driver = EvaluationDriver([EvaluatorRun("count", subset=4)], progress=False)
    results = driver.run(real, synthetic, seed=1)
    assert (
        results["count"]["a"]["synthetic"] == 4 and results["count"]["a"]["n_synthetic_scored"] == 4
    )
    assert (
        results["count"]["b"]["synthetic"] == 3
        and "n_synthetic_scored" not in results["count"]["b"]
    )


def test_bad_evaluators_fail_before_any_work(htd_manager, register_plugin):
    register_plugin(CountPlugin(), "count_plugin")
    with pytest.raises(HtdError, match="unknown evaluator 'cuont'. Did you mean 'count'"):
        EvaluationDriver(["cuont"])
    with pytest.raises(ConfigError, match="each evaluator once"):
        EvaluationDriver(["count", "count"])
    with pytest.raises(HtdError, match="offst"):
        EvaluationDriver([{"name": "count", "offst": 1}]).check()


def test_pipeline_evaluate_goes_through_the_driver(htd_manager, register_plugin, sets):
    register_plugin(CountPlugin(), "count_plugin")
    real, synthetic = sets
    pipe = Pipeline(evaluators=[{"name": "count", "offset": 2}])
    CALLS.clear()
    out = pipe.evaluate(real, synthetic["a"], batch_size=3)
    assert out == {"count": {"real": 5, "held_out": 1, "synthetic": 7, "offset": 2, "seed": 0,
                             "output_dir": "None"}}  # fmt: skip
    assert CALLS[:3] == [("reset",), ("update", 3, 0), ("update", 2, 0)]  # the driver's batches


def test_the_driver_names_no_evaluator():
    import htd_core.evaluation as driver

    source = inspect.getsource(driver).lower()
    for name in ("frechet", "deeplab", "privacy", "segmentation"):
        assert name not in source, name
    assert Path(driver.__file__).parent.name == "htd_core"  # the core: it imports no plugin
