"""The ``deeplabv3plus`` evaluator: conformance, settings, splits and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.testing import EvaluatorConformance, real_tiles, synthetic_sample
from htd_core.types import TissueSample
from htd_plugins.evaluators.deeplabv3plus import DeepLabV3PlusEvaluator


class TestDeepLabConformance(EvaluatorConformance):
    def make_evaluator(self) -> DeepLabV3PlusEvaluator:
        return DeepLabV3PlusEvaluator(budget="tiny")


def _with_split(samples: list[TissueSample], split: str) -> list[TissueSample]:
    return [TissueSample(s.image, s.mask, s.class_map, {**s.meta, "split": split}) for s in samples]


def test_three_settings_and_gaps_on_real_tiles(shared_data) -> None:
    tiles = real_tiles(shared_data, "glas", n=12)
    real = tiles[:4] + _with_split(tiles[4:8], "test")
    metrics = DeepLabV3PlusEvaluator(budget="tiny").evaluate(real, tiles[8:])
    assert set(metrics["settings"]) == {"real", "synthetic", "real+synthetic"}
    assert metrics["settings"]["real+synthetic"]["n_train"] == 8
    assert metrics["n_test"] == 4 and metrics["n_test_sources"] == 1  # testA_1's four tiles
    for s in metrics["settings"].values():
        assert set(s["iou"]) == {"non_gland", "gland"}
        assert 0.0 <= s["mean_iou"] <= 1.0
    gap = metrics["settings"]["synthetic"]["mean_iou"] - metrics["settings"]["real"]["mean_iou"]
    assert metrics["gap_synthetic_vs_real"] == pytest.approx(gap)
    assert 0.0 < metrics["chance_mean_iou"] < 1.0


def test_random_split_keeps_source_images_whole(shared_data) -> None:
    tiles = real_tiles(shared_data, "glas", n=16)  # four source images, four tiles each
    ev = DeepLabV3PlusEvaluator(budget="tiny", settings=["real"], test_fraction=0.25)
    ev.update(real=tiles)
    train, test = ev._split_real()
    sources = [ev._real[i][2] for i in range(len(tiles))]
    assert len(test) == 4 and len(set(sources[i] for i in test)) == 1
    assert not {sources[i] for i in train} & {sources[i] for i in test}


def test_ignore_index_pixels_count_for_nothing() -> None:
    import torch

    from htd_plugins.evaluators.segmentation.training import score_predictions

    labels = torch.tensor([[[0, 0, 1, 255]]])
    wrong_on_ignored = torch.tensor([[[0, 0, 1, 0]]])
    scores = score_predictions(wrong_on_ignored, labels, num_classes=2, ignore_index=255)
    assert scores["iou"] == [1.0, 1.0] and scores["dice"] == [1.0, 1.0]
    half = score_predictions(
        torch.tensor([[[0, 1, 1, 1]]]), labels, num_classes=2, ignore_index=255
    )
    assert half["iou"] == pytest.approx([0.5, 0.5])


def test_synthetic_set_without_masks_is_refused() -> None:
    real = [synthetic_sample(32, seed=s) for s in range(4)]
    unlabelled = [
        TissueSample(s.image, np.full_like(s.mask, s.class_map.ignore_index), s.class_map, s.meta)
        for s in (synthetic_sample(32, seed=10 + i) for i in range(2))
    ]
    with pytest.raises(InputError, match="synthetic set has no masks"):
        DeepLabV3PlusEvaluator(budget="tiny").evaluate(real, unlabelled)


def test_bad_input_is_named() -> None:
    real = [synthetic_sample(32, seed=s) for s in range(4)]
    with pytest.raises(InputError, match="none\\s+were given"):
        DeepLabV3PlusEvaluator(budget="tiny").evaluate(real, [])
    with pytest.raises(InputError, match="no real samples"):
        DeepLabV3PlusEvaluator(budget="tiny").evaluate([], real)
    other = [synthetic_sample(32, classes=("x", "y"), seed=9)]
    with pytest.raises(InputError, match="share one class list"):
        DeepLabV3PlusEvaluator(budget="tiny").update(real=real, synthetic=other)
    with pytest.raises(InputError, match="budget"):
        DeepLabV3PlusEvaluator(budget="huge")
    with pytest.raises(InputError, match="settings"):
        DeepLabV3PlusEvaluator(settings=["fake"])
    with pytest.raises(InputError, match="batch_size"):
        DeepLabV3PlusEvaluator(batch_size=1)
    same_source = [TissueSample(s.image, s.mask, s.class_map, {"slide_id": "one"}) for s in real]
    with pytest.raises(InputError, match="at least two"):
        DeepLabV3PlusEvaluator(budget="tiny", settings=["real"]).evaluate(same_source, [])


def test_real_only_needs_no_synthetic_and_mixed_sizes_are_resized(shared_data) -> None:
    glas = real_tiles(shared_data, "glas", n=8)
    camelyon = real_tiles(shared_data, "camelyon_mini", n=2)  # 512 px, same two-class layout
    camelyon = [TissueSample(s.image, s.mask, glas[0].class_map, s.meta) for s in camelyon]
    metrics = DeepLabV3PlusEvaluator(budget="tiny", settings=["real"]).evaluate(glas + camelyon, [])
    assert set(metrics["settings"]) == {"real"} and "gap_synthetic_vs_real" not in metrics


def test_learns_real_glas_above_chance(shared_data) -> None:
    """A short run on real GlaS tiles beats the chance predictor clearly (the longer run in
    benchmarks/deeplabv3plus_glas.py gives the number quoted in docs)."""
    from htd_plugins.evaluators.reporting.sets import open_set

    glas = shared_data / "glas"
    train = list(open_set(glas, match="train_*", limit=48))  # 12 source images
    test = list(open_set(glas, match="testA_*", limit=16, split="test"))  # 4 others
    ev = DeepLabV3PlusEvaluator(
        budget="tiny", steps=80, input_size=64, batch_size=8, lr=3e-3, settings=["real"]
    )
    metrics = ev.evaluate(train + test, [])
    assert metrics["settings"]["real"]["mean_iou"] > metrics["chance_mean_iou"] + 0.1
