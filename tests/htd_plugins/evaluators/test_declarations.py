"""What evaluators declare to ``htd evaluate`` and its report: run-wide options taken,
default report sections, nearest real neighbours."""

from __future__ import annotations

import math
from pathlib import Path

from htd_core.interfaces import Evaluator
from htd_core.interfaces.evaluator import (
    MAX_TABLE_ROWS,
    ReportContext,
    RunSettings,
    evaluator_class,
    evaluator_options,
    flatten_metrics,
    markdown_table,
)
from htd_plugins.evaluators.deeplabv3plus import DeepLabV3PlusEvaluator
from htd_plugins.evaluators.frechet import FrechetEvaluator
from htd_plugins.evaluators.privacy import PrivacyEvaluator

RUN = RunSettings(
    device="cuda:1",
    encoders=("uni", "pooled"),
    weights={"uni": "uni.safetensors", "other": "other.safetensors"},
    cache_dir=Path("cache"),
    output_dir=Path("figures/x-set"),
)


class Counter(Evaluator):
    """Counts samples."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.n = 0

    def update(self, *, real=None, synthetic=None) -> None:
        self.n += len(real or ()) + len(synthetic or ())

    def aggregate(self) -> dict:
        return {"n": self.n}


def test_frechet_takes_the_encoders_and_only_their_weights() -> None:
    opts = evaluator_options(FrechetEvaluator, RUN, {})
    assert opts == {
        "device": "cuda:1",
        "cache_dir": Path("cache"),
        "encoders": ["uni", "pooled"],
        "weights": {"uni": "uni.safetensors"},
    }
    FrechetEvaluator(**opts)  # weights for an encoder it does not use would be refused
    mine = evaluator_options(FrechetEvaluator, RUN, {"encoders": ["other"], "kid": True})
    assert mine["encoders"] == ["other"] and mine["weights"] == {"other": "other.safetensors"}
    assert mine["kid"] is True
    default = RunSettings(weights={"inception_fid": "fid.pth", "uni": "uni.safetensors"})
    assert evaluator_options(FrechetEvaluator, default, {}) == {
        "device": "cpu",
        "weights": {"inception_fid": "fid.pth"},  # one of its declared default encoders
    }
    assert FrechetEvaluator.default_encoders == ("inception_fid", "efficientnet_lite0")


def test_privacy_takes_the_first_encoder_its_weights_a_folder_and_the_cache() -> None:
    assert evaluator_options(PrivacyEvaluator, RUN, {}) == {
        "device": "cuda:1",
        "cache_dir": Path("cache"),
        "output_dir": Path("figures/x-set"),
        "encoder": "uni",
        "weights": "uni.safetensors",
    }
    chosen = evaluator_options(PrivacyEvaluator, RUN, {"encoder": {"name": "other"}})
    assert chosen["encoder"] == {"name": "other"} and chosen["weights"] == "other.safetensors"
    assert "weights" not in evaluator_options(PrivacyEvaluator, RunSettings(), {})


def test_deeplab_takes_the_device_and_the_cache() -> None:
    assert evaluator_options(DeepLabV3PlusEvaluator, RUN, {"budget": "tiny"}) == {
        "device": "cuda:1",
        "cache_dir": Path("cache"),
        "budget": "tiny",
    }


def test_defaults_pass_settings_a_factory_accepts() -> None:
    assert evaluator_options(Counter, RUN, {}) == {"device": "cuda:1"}
    assert Counter.run_options(RUN, {}) == {"device": "cuda:1"}

    def any_options(**options):
        return Counter()

    def device_only(device: str = "cpu"):
        return Counter(device)

    assert evaluator_class(any_options) is Evaluator
    assert evaluator_options(any_options, RUN, {"x": 1}) == {
        "device": "cuda:1",
        "cache_dir": Path("cache"),
        "output_dir": Path("figures/x-set"),
        "x": 1,
    }
    assert evaluator_options(device_only, RunSettings(), {}) == {"device": "cpu"}
    assert [c.run_by_default for c in (FrechetEvaluator, PrivacyEvaluator, Counter)] == [
        True,
        False,
        False,
    ]


def test_default_report_section_is_a_table_of_the_metrics(tmp_path) -> None:
    ctx = ReportContext(name="counter", report_dir=tmp_path, figure_dir=tmp_path / "figures")
    results = {
        "a": {"n": 3, "fd": {"uni": 1.23456789, "inf": math.nan}, "ids": [1, 2], "big": [0] * 9},
        "b|c": {"n": 4, "note": "x|y\nz"},
    }
    text = Counter.report_section(results, ctx)
    assert text.startswith("## counter\n\nCounts samples.\n")
    assert "| metric | a | b|c |" in text
    for row in ("| n | 3 | 4 |", "| fd.uni | 1.235 | - |", "| fd.inf | - | - |"):
        assert row in text
    assert "| ids | 1, 2 | - |" in text and "| big | [9 values] | - |" in text
    assert "| note | - | x\\|y z |" in text
    many = {"a": {f"m{i}": i for i in range(MAX_TABLE_ROWS + 5)}}
    assert "5 more values in `metrics.json`" in Counter.report_section(many, ctx)
    assert Evaluator.report_section({"a": {"n": 1}}, ctx).startswith("## counter\n\n| metric")


def test_markdown_helpers_and_links(tmp_path) -> None:
    assert flatten_metrics({"a": {"b": {"c": 1}}, "d": [[1], [2]]}) == {
        "a.b.c": 1,
        "d": "[2 values]",
    }
    assert markdown_table(["x", "y"], [[0.5, None]]) == "| x | y |\n|---|---|\n| 0.5 | - |\n"
    ctx = ReportContext(name="x", report_dir=tmp_path, figure_dir=tmp_path / "figures")
    assert ctx.link(tmp_path / "figures" / "privacy-a" / "f.png") == "figures/privacy-a/f.png"


def test_privacy_gives_nearest_real_others_none() -> None:
    assert PrivacyEvaluator.nearest_real({"nearest_real": [2, -1]}) == [2, -1]
    assert FrechetEvaluator.nearest_real({"encoders": {}}) is None
