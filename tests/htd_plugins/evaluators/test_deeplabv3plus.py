"""The ``deeplabv3plus`` evaluator: conformance, settings, splits and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.splits import opaque_source
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

    from htd_plugins.evaluators.segmentation.metrics import score_predictions

    labels = torch.tensor([[[0, 0, 1, 255]]])
    wrong_on_ignored = torch.tensor([[[0, 0, 1, 0]]])
    scores = score_predictions(wrong_on_ignored, labels, num_classes=2, ignore_index=255)
    assert scores["iou"] == [1.0, 1.0] and scores["dice"] == [1.0, 1.0]
    assert scores["pixel_accuracy"] == 1.0 and scores["confusion"] == [[2, 0], [0, 1]]
    half = score_predictions(
        torch.tensor([[[0, 1, 1, 1]]]), labels, num_classes=2, ignore_index=255
    )
    assert half["iou"] == pytest.approx([0.5, 0.5])


def test_iou_counts_false_positives_on_images_that_lack_the_class() -> None:
    """Image A is all class 0 and predicted all class 1; image B is half 0, half 1, predicted
    perfectly. Over all test pixels each class has TP = n/2 and FP + FN = n: IoU 1/3 for both
    (a per-image mean over images containing the class gives 0.5 and 1.0)."""
    import torch

    from htd_plugins.evaluators.segmentation.metrics import score_predictions, summarise

    a = torch.zeros(8, 8, dtype=torch.long)
    b = torch.cat([torch.zeros(4, 8), torch.ones(4, 8)]).long()
    labels, preds = torch.stack([a, b]), torch.stack([torch.ones_like(a), b])
    scores = score_predictions(preds, labels, num_classes=2, ignore_index=255)
    assert scores["iou"] == pytest.approx([1 / 3, 1 / 3])
    assert scores["dice"] == pytest.approx([0.5, 0.5])  # 2 TP / (2 TP + FP + FN)
    assert scores["pixel_accuracy"] == pytest.approx(0.5)
    assert scores["confusion"] == [[32, 64], [0, 32]]  # rows: label, columns: prediction
    summary = summarise(scores, ("a", "b"))
    assert summary["mean_iou"] == pytest.approx(1 / 3) and summary["mean_dice"] == 0.5
    assert summary["confusion"]["a"] == {"a": 32, "b": 64}
    # a class absent from the test labels is left out of the means
    absent = score_predictions(preds, labels, num_classes=3, ignore_index=255)
    assert absent["iou"][2] is None
    assert summarise(absent, ("a", "b", "c"))["mean_iou"] == pytest.approx(1 / 3)


def test_loss_is_blind_to_the_ignore_index() -> None:
    """Labels [0, 0, 1, 1] plus four ignored pixels give exactly the loss of [0, 0, 1, 1]
    alone with the same predictions (cross-entropy and Dice both)."""
    import torch

    from htd_plugins.evaluators.segmentation.training import segmentation_loss

    logits = torch.randn(1, 2, 1, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[[0, 0, 1, 1, 255, 255, 255, 255]]])
    loss = segmentation_loss(255)
    with_ignored = loss(logits, labels)
    alone = loss(logits[..., :4].contiguous(), labels[..., :4].contiguous())
    assert float(with_ignored) == float(alone)
    # and what the ignored pixels are predicted to be changes nothing
    other = logits.clone()
    other[..., 4:] = -other[..., 4:] * 5
    assert float(loss(other, labels)) == float(with_ignored)


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
    from htd_plugins.evaluation import open_set

    glas = shared_data / "glas"
    # the first tiles in name order (--limit would spread them over every source image)
    train_set, test_set = (
        open_set(glas, match="train_*"),
        open_set(glas, match="testA_*", split="test"),
    )
    train = [train_set[i] for i in range(48)]  # 12 source images
    test = [test_set[i] for i in range(16)]  # 4 others
    ev = DeepLabV3PlusEvaluator(
        budget="tiny", steps=80, input_size=64, batch_size=8, lr=3e-3, settings=["real"]
    )
    metrics = ev.evaluate(train + test, [])
    assert metrics["settings"]["real"]["mean_iou"] > metrics["chance_mean_iou"] + 0.1


def test_synthetic_samples_from_held_out_sources_are_refused() -> None:
    """A synthetic sample generated from a held-out layout, or with a crop cut from a held-out
    image, would put the test images into training: refused by name, or recorded when allowed."""
    real = [synthetic_sample(32, seed=s) for s in range(3)]
    held_out = _with_split([synthetic_sample(32, seed=s) for s in (7, 8)], "test")
    from_held_out = synthetic_sample(32, seed=20)
    from_held_out.meta = {"slide_id": "synthetic-7"}  # the layout of a held-out image
    held_out_crop = synthetic_sample(32, seed=21)
    held_out_crop.meta = {
        "slide_id": "synthetic-1",
        "crop_provenance": {"tumor": {"source": "sample", "slide_id": "synthetic-8"}},
    }
    clean = synthetic_sample(32, seed=22)  # slide_id synthetic-22: no held-out source
    ev = DeepLabV3PlusEvaluator(budget="tiny")
    for bad in (from_held_out, held_out_crop):
        with pytest.raises(InputError, match="shares 1 source image") as info:
            ev.evaluate(real + held_out, [clean, bad])
        assert opaque_source("synthetic-7" if bad is from_held_out else "synthetic-8") in str(
            info.value
        )
    assert "overlap" not in ev.evaluate(real + held_out, [clean])
    allowed = DeepLabV3PlusEvaluator(budget="tiny", allow_overlap=True)
    overlap = allowed.evaluate(real + held_out, [clean, from_held_out, held_out_crop])["overlap"]
    assert overlap["layout_rows"] == 1 and overlap["crop_rows"] == 1 and overlap["rows"] == 2
    assert overlap["sources"] == sorted(opaque_source(f"synthetic-{i}") for i in (7, 8))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_size": 40}, r"input_size=40 must be a multiple of 16.*32 or 48"),
        ({"encoder": "tu-no_such_model"}, r"encoder='tu-no_such_model'"),
        ({"encoder": "resnet999"}, r"encoder='resnet999'"),
        ({"encoder": "tu-resnet18", "pretrained": True}, r"no ImageNet weights installed offline"),
        ({"output_stride": 32}, r"output_stride=32; use 8 or 16"),
        ({"bootstrap": -1}, r"bootstrap=-1 must be an integer >= 0"),
    ],
)
def test_options_smp_would_reject_later_are_refused_up_front(options, message) -> None:
    """smp raises only at the first forward pass, after every set was loaded."""
    with pytest.raises(InputError, match=message):
        DeepLabV3PlusEvaluator(budget="tiny", **options)


def test_the_real_setting_is_trained_once_for_several_synthetic_sets(
    shared_data, tmp_path, training_calls
) -> None:
    """With a ``cache_dir`` the ``real`` setting's network (which no synthetic set changes) is
    trained once and reused for the next set; other real data or another seed train again."""
    calls = training_calls
    tiles = real_tiles(shared_data, "glas", n=16)
    real = tiles[:4] + _with_split(tiles[4:8], "test")
    ev = lambda **o: DeepLabV3PlusEvaluator(budget="tiny", cache_dir=tmp_path, **o)  # noqa: E731
    first = ev().evaluate(real, tiles[8:12])
    assert calls == ["real", "other", "other"]  # real, synthetic, real + synthetic
    second = ev().evaluate(real, tiles[12:16])
    assert calls[3:] == ["other", "other"]  # the real network came from the cache
    assert second["settings"]["real"] == first["settings"]["real"]
    assert second["settings"]["synthetic"] != first["settings"]["synthetic"]
    assert len(list(tmp_path.glob("segmentation-real-*.safetensors"))) == 1
    ev(seed=1).evaluate(real, tiles[8:12])
    assert calls[5:] == ["real", "other", "other"]  # another seed is another real model
    ev().evaluate(tiles[:3] + _with_split(tiles[4:8], "test"), tiles[8:12])
    assert calls[8] == "real"  # other real training images too
    uncached = DeepLabV3PlusEvaluator(budget="tiny").evaluate(real, tiles[8:12])
    assert uncached["settings"]["real"] == first["settings"]["real"]  # the cache changes nothing


def test_bootstrap_resamples_are_shared_by_synthetic_sets_and_can_be_turned_off(
    shared_data, monkeypatch
) -> None:
    """Two synthetic sets against one held-out set get the same resamples (a caller pairs
    them sample by sample); every interval holds its point estimate; bootstrap=0 is off."""
    from htd_core import bootstrap

    used: list[np.ndarray] = []
    original = bootstrap.resample_indices
    monkeypatch.setattr(bootstrap, "resample_indices",
                        lambda *a, **k: used.append(original(*a, **k)) or used[-1])  # fmt: skip
    tiles = real_tiles(shared_data, "glas", n=20)
    real = tiles[:8] + _with_split(tiles[8:16], "test")
    options = {"budget": "tiny", "steps": 12, "settings": ["synthetic"]}
    ev = DeepLabV3PlusEvaluator(bootstrap=40, **options)
    one = ev.evaluate(real, tiles[16:18])
    two = ev.evaluate(real, tiles[18:20])
    assert len(used) == 2 and used[0].shape == (40, 8) and (used[0] == used[1]).all()
    for metrics in (one, two):
        s = metrics["settings"]["synthetic"]
        assert len(s["bootstrap"]["mean_iou"]) == 40
        lo, hi = s["mean_iou_ci"]
        assert lo <= s["mean_iou"] <= hi
    assert one["settings"]["synthetic"]["mean_iou"] != two["settings"]["synthetic"]["mean_iou"]
    off = DeepLabV3PlusEvaluator(bootstrap=0, **options)
    plain = off.evaluate(real, tiles[16:18])["settings"]["synthetic"]
    assert "bootstrap" not in plain and "mean_iou_ci" not in plain
    assert plain["mean_iou"] == one["settings"]["synthetic"]["mean_iou"]


def test_a_synthetic_set_of_another_size_is_warned_like_frechet() -> None:
    """Issue 27: FD warned and DeepLabv3+ said nothing; one note, the same everywhere."""
    from htd_plugins.evaluators.sizes import ImageSizeWarning

    real = [synthetic_sample(32, seed=s) for s in range(4)]
    larger = [synthetic_sample(48, seed=10 + s) for s in range(2)]
    evaluator = DeepLabV3PlusEvaluator(budget="tiny", settings=["synthetic"], steps=1)
    with pytest.warns(ImageSizeWarning, match="deeplabv3plus: real images are 32x32 and "
                      "synthetic 48x48; both were resized to 32x32, so the IoU"):  # fmt: skip
        metrics = evaluator.evaluate(real, larger)
    assert len(metrics["warnings"]) == 1 and "48x48" in metrics["warnings"][0]
    same = DeepLabV3PlusEvaluator(budget="tiny", settings=["synthetic"], steps=1, input_size=32)
    assert same.evaluate(real, real[:2])["warnings"] == []
