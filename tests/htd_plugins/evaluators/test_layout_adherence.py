"""The ``layout_adherence`` evaluator: conformance, real GlaS tiles with right and shuffled
masks, the real network shared with ``deeplabv3plus`` through the cache, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.interfaces.evaluator import RunSettings, evaluator_options
from htd_core.testing import EvaluatorConformance, real_tiles, synthetic_sample
from htd_core.types import TissueSample
from htd_plugins.evaluators.deeplabv3plus import DeepLabV3PlusEvaluator
from htd_plugins.evaluators.layout_adherence import LayoutAdherenceEvaluator


class TestLayoutAdherenceConformance(EvaluatorConformance):
    def make_evaluator(self) -> LayoutAdherenceEvaluator:
        return LayoutAdherenceEvaluator(budget="tiny", bootstrap=20)


def _with_split(samples: list[TissueSample], split: str) -> list[TissueSample]:
    return [TissueSample(s.image, s.mask, s.class_map, {**s.meta, "split": split}) for s in samples]


def test_registered_with_the_options_of_deeplabv3plus() -> None:
    from htd_core.plugins import get_registry
    from htd_core.registry import accepted_options

    assert get_registry("evaluators").entry("layout_adherence").factory is LayoutAdherenceEvaluator
    run = RunSettings(device="cpu", cache_dir=Path("cache"), seed=3)
    assert evaluator_options(LayoutAdherenceEvaluator, run, {"budget": "tiny"}) == {
        "device": "cpu", "cache_dir": Path("cache"), "seed": 3, "budget": "tiny",
    }  # fmt: skip
    mine, theirs = (
        accepted_options(LayoutAdherenceEvaluator),
        accepted_options(DeepLabV3PlusEvaluator),
    )
    assert set(theirs) - set(mine) == {"settings", "allow_overlap"}


def test_real_held_out_tiles_adhere_and_shuffled_masks_do_not(shared_data, tmp_path) -> None:
    """Real GlaS tiles given as "synthetic" (held-out images the network never saw, with their
    own masks) score about the ceiling; the same tiles with their masks shuffled between
    images score clearly lower, towards chance."""
    from htd_plugins.evaluation import open_set

    glas = shared_data / "glas"
    train = list(open_set(glas, match="train_*", limit=48))  # spread over 48 source images
    test = list(open_set(glas, match="testA_*", limit=16, split="test"))  # over 16 others
    tiles = list(open_set(glas, match="testB_*", limit=16))  # 16 more, as the synthetic set
    shift = np.roll(np.arange(len(tiles)), 4)  # every tile gets another source image's mask
    shuffled = [TissueSample(s.image, tiles[j].mask, s.class_map, s.meta)
                for s, j in zip(tiles, shift, strict=True)]  # fmt: skip
    ev = LayoutAdherenceEvaluator(budget="tiny", steps=80, input_size=64, batch_size=8, lr=3e-3,
                                  bootstrap=100, cache_dir=tmp_path)  # fmt: skip
    right = ev.evaluate(train + test, tiles)
    wrong = ev.evaluate(train + test, shuffled)
    assert right["ceiling"] == wrong["ceiling"]  # one network, one held-out set
    ceiling = right["ceiling"]["mean_iou"]
    assert ceiling > right["chance_mean_iou"] + 0.1
    assert abs(right["adherence"]["mean_iou"] - ceiling) < 0.1 and right["ratio"] > 0.85
    assert wrong["adherence"]["mean_iou"] < right["adherence"]["mean_iou"] - 0.1
    assert wrong["ratio"] < right["ratio"] - 0.2
    for metrics in (right, wrong):
        for part in ("adherence", "ceiling"):
            lo, hi = metrics[part]["mean_iou_ci"]
            assert lo <= metrics[part]["mean_iou"] <= hi
        lo, hi = metrics["ratio_ci"]
        assert lo <= metrics["ratio"] <= hi and len(metrics["bootstrap"]["ratio"]) == 100
    # the same 16 images: the same adherence resamples, so the two can be paired
    assert right["adherence"]["n"] == wrong["adherence"]["n"] == 16


def test_one_real_network_for_both_evaluators_and_every_set(shared_data, tmp_path,
                                                            training_calls) -> None:  # fmt: skip
    """With one ``cache_dir`` and the same options, ``deeplabv3plus``'s ``real`` setting and
    ``layout_adherence`` use one network, trained once for both and for every synthetic set."""
    calls = training_calls
    tiles = real_tiles(shared_data, "glas", n=16)
    real = tiles[:4] + _with_split(tiles[4:8], "test")
    options = {"budget": "tiny", "cache_dir": tmp_path, "seed": 2}
    seg = DeepLabV3PlusEvaluator(settings=["real", "synthetic"], **options)
    adherence = LayoutAdherenceEvaluator(**options)
    first = seg.evaluate(real, tiles[8:12])
    assert calls == ["real", "other"]
    a = adherence.evaluate(real, tiles[8:12])
    b = adherence.evaluate(real, tiles[12:16])
    seg.evaluate(real, tiles[12:16])
    assert calls == ["real", "other", "other"]  # the real network was trained once
    assert len(list(tmp_path.glob("segmentation-real-*.safetensors"))) == 1
    # the network that scored deeplabv3plus's real row is the one adherence's ceiling used
    assert a["ceiling"]["mean_iou"] == first["settings"]["real"]["mean_iou"]
    assert a["ceiling"]["iou"] == b["ceiling"]["iou"] == first["settings"]["real"]["iou"]
    LayoutAdherenceEvaluator(**{**options, "augment": False}).evaluate(real, tiles[8:12])
    assert calls[-1] == "real"  # another augmentation is another network


def test_synthetic_sets_without_masks_are_refused_in_one_line() -> None:
    real = [synthetic_sample(32, seed=s) for s in range(4)]
    blank = [
        TissueSample(s.image, np.full_like(s.mask, s.class_map.ignore_index), s.class_map, s.meta)
        for s in (synthetic_sample(32, seed=10 + i) for i in range(2))
    ]
    for bad in (blank, [TissueSample(blank[0].image, blank[0].mask, blank[0].class_map,
                                     {"mask": "none"})]):  # fmt: skip
        with pytest.raises(
            InputError, match="layout_adherence: the synthetic set has no masks"
        ) as e:
            LayoutAdherenceEvaluator(budget="tiny").evaluate(real, bad)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="none were given"):
        LayoutAdherenceEvaluator(budget="tiny").evaluate(real, [])
    with pytest.raises(InputError, match="layout_adherence: .*batch_size=1"):
        LayoutAdherenceEvaluator(batch_size=1)
    with pytest.raises(InputError, match="layout_adherence has no option 'settings'"):
        LayoutAdherenceEvaluator(settings=["real"])


def test_bootstrap_off_leaves_no_intervals() -> None:
    real = [synthetic_sample(32, seed=s) for s in range(6)]
    synthetic = [synthetic_sample(32, seed=100 + s) for s in range(3)]
    metrics = LayoutAdherenceEvaluator(budget="tiny", bootstrap=0).evaluate(real, synthetic)
    assert "ratio_ci" not in metrics and "bootstrap" not in metrics
    assert "mean_iou_ci" not in metrics["adherence"] and "mean_iou_ci" not in metrics["ceiling"]
    assert metrics["adherence"]["n"] == 3 and metrics["n_bootstrap"] == 0
